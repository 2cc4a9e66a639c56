// The window's half of projects: File > Export History, Save / Open Project, and the question about
// unsaved history before it is thrown away. The files themselves are ui/project_file.cpp's.
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/model_worker.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"
#include "ui/prompt_editor.h"

#include "core/error.h"
#include "io/a1111_parameters.h"
#include "io/image_file.h"
#include "pipeline/generation.h"

#include <QAction>
#include <QCloseEvent>
#include <QDir>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QMimeData>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QFrame>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTabWidget>
#include <QUrl>

#include <algorithm>
#include <filesystem>

namespace fisedit::ui {
namespace {

// A function, not a constant: tr() must run after the translators are installed.
QString projectFilter() { return QObject::tr("fisedit projects (*.fisedit)"); }

}  // namespace

ProjectContent MainWindow::projectContent() const {
  ProjectContent content;
  content.records = m_history->records();
  // The project's model is the open one; nodes made with another (a project opened view-only) name
  // their own in the file.
  ModelIdentity model;
  if (m_model)
    model = {m_model->source, m_model->family, m_model->fingerprint};
  else if (!content.records.isEmpty())
    model = content.records.first().model;
  content.modelPath = model.path;
  content.modelFamily = model.family;
  content.modelFingerprint = model.fingerprint;
  return content;
}

bool MainWindow::madeWithOpenModel(const HistoryRecord& r) const {
  if (!m_model) return false;
  if (!r.model.fingerprint.isEmpty()) return r.model.fingerprint == m_model->fingerprint;
  // Written before fingerprints were recorded: the same files are the best evidence there is.
  return !r.model.path.isEmpty() && QFileInfo(r.model.path) == QFileInfo(m_model->source);
}

QString MainWindow::viewOnlyNote(const HistoryRecord& r) const {
  if (r.model.path.isEmpty())
    return tr("View only: the project does not say which model made this image. Generate makes new images "
              "from its parameters.");
  return tr("View only: this image was made with %1 (%2). Open that model to edit it; Generate makes new "
            "images from its parameters.")
      .arg(QFileInfo(r.model.path).fileName(), r.model.path);
}

void MainWindow::adoptRestoredNodes() {
  QList<HistoryRecord> restored, adoptable;
  for (const HistoryRecord& r : m_history->records())
    if (r.restored) restored.append(r);
  if (restored.isEmpty()) return;
  // The answer to a request still on its way concerns the session that will hold these nodes: the
  // worker runs requests in order, and an answer from an older session arrives before engineReady.
  if (m_adoptionPending) return;
  if (isLoading()) return;  // onEngineReady tries again, with the model being loaded
  for (const HistoryRecord& r : restored)
    if (madeWithOpenModel(r)) adoptable.append(r);
  if (adoptable.isEmpty()) {
    statusBar()->showMessage(viewOnlyNote(restored.first()));
    emit restoredNodesAdopted(0, static_cast<int>(restored.size()));
    return;
  }
  const quint64 token = ++m_adoptToken;
  m_adoptionPending = true;
  QMetaObject::invokeMethod(
      m_worker, [worker = m_worker, adoptable, token] { worker->adoptHistory(adoptable, token); }, Qt::QueuedConnection);
}

void MainWindow::onHistoryAdopted(const QHash<quint64, quint64>& ids, const QString& problems, quint64 token) {
  // Another project replaced the history these were read from: the worker's clearHistory() has
  // dropped them already.
  if (token != m_adoptToken) return;
  m_adoptionPending = false;
  QHash<quint64, quint64> kept;
  for (auto it = ids.cbegin(); it != ids.cend(); ++it) {
    if (m_history->record(it.key())) {
      kept.insert(it.key(), it.value());
    } else {  // deleted from the panel while the worker adopted it
      const quint64 gone = it.value();
      QMetaObject::invokeMethod(m_worker, [worker = m_worker, gone] { worker->removeNode(gone); }, Qt::QueuedConnection);
    }
  }
  m_history->adoptIds(kept);
  for (Deletion& d : m_deletions)  // a deleted subtree's top hangs from a node that may just have been adopted
    for (HistoryRecord& r : d.records)
      if (r.parent) r.parent = kept.value(*r.parent, *r.parent);
  QList<HistoryRecord> viewOnlyRecords;
  for (const HistoryRecord& r : m_history->records())
    if (r.restored) viewOnlyRecords.append(r);
  const int viewOnly = static_cast<int>(viewOnlyRecords.size());
  QString note = tr("%n image(s) of the project can be edited (the first edit rebuilds the cache)", nullptr,
                    static_cast<int>(kept.size()));
  if (viewOnly > 0)  // the session's reasons, or the other model's (or the parent's) that kept them out
    note += tr("; %n stay view-only: %1", nullptr, viewOnly).arg(problems.isEmpty() ? viewOnlyNote(viewOnlyRecords.first()) : problems);
  statusBar()->showMessage(note, viewOnly > 0 ? 0 : 10000);
  updateGenerateButton();
  emit restoredNodesAdopted(static_cast<int>(kept.size()), viewOnly);
}

void MainWindow::keepHistoryForNewEngine() {
  // The new engine's session is empty, so no node can be edited from it yet; the images and records
  // stay (nothing is lost on a model or device switch), view only, and the nodes made with the new
  // model are adopted again once its engine is ready (adoptRestoredNodes).
  const QHash<quint64, quint64> ids = m_history->makeViewOnly();
  // Deleted subtrees waiting for an undo left the old session too: view only, renumbered the same way,
  // their top's parent link following the panel's renumbering.
  for (Deletion& d : m_deletions) {
    QHash<quint64, quint64> local;
    for (HistoryRecord& r : d.records) {
      if (!r.restored) {
        local.insert(r.id, m_history->newViewOnlyId());
        r.id = local.value(r.id);
        r.restored = true;
      }
      if (r.parent) r.parent = local.value(*r.parent, ids.value(*r.parent, *r.parent));
    }
  }
}

QWidget* MainWindow::createViewOnlyBar() {
  // Above the canvas while a view-only image is shown: why it cannot be edited, in full (the status
  // bar cuts long notes off), and the way to edit it, switching to the model that made it.
  auto* bar = new QFrame;
  bar->setObjectName(QStringLiteral("viewOnlyBar"));
  bar->setFrameShape(QFrame::StyledPanel);
  bar->setStyleSheet(QStringLiteral("#viewOnlyBar { background: #fff4d6; border: 1px solid #e0c060; } "
                                    "#viewOnlyBar QLabel { color: #3a3000; }"));
  auto* layout = new QHBoxLayout(bar);
  layout->setContentsMargins(8, 4, 8, 4);
  m_viewOnlyText = new QLabel;
  m_viewOnlyText->setObjectName(QStringLiteral("viewOnlyText"));
  m_viewOnlyText->setWordWrap(true);
  m_switchModelButton = new QPushButton;
  m_switchModelButton->setObjectName(QStringLiteral("switchModelButton"));
  connect(m_switchModelButton, &QPushButton::clicked, this, &MainWindow::switchToShownModel);
  layout->addWidget(m_viewOnlyText, 1);
  layout->addWidget(m_switchModelButton);
  bar->hide();
  return bar;
}

void MainWindow::updateViewOnlyBar() {
  const auto current = m_history->currentNode();
  const HistoryRecord* r = current ? m_history->record(*current) : nullptr;
  if (!r || !r->restored || madeWithOpenModel(*r)) {
    m_viewOnlyBar->hide();
    return;
  }
  const QString name = QFileInfo(r->model.path).fileName();
  const bool reachable = !r->model.path.isEmpty() && QFileInfo::exists(r->model.path);
  QString text;
  if (r->model.path.isEmpty())
    text = tr("<b>View only.</b> The project does not say which model made this image, and an edit needs that "
              "model. Generate makes a new image from its parameters with the open model.");
  else if (!reachable)
    text = tr("<b>View only.</b> This image was made with %1, which is no longer at %2, so it cannot be edited "
              "here (open that model with File > Open Model if you have it elsewhere). Generate makes a new "
              "image from its parameters with the open model.")
               .arg(name.toHtmlEscaped(), r->model.path.toHtmlEscaped());
  else
    text = tr("<b>View only.</b> This image was made with %1, not with the open model: an edit needs the model "
              "that made the image. Generate makes a new image from its parameters with the open model.")
               .arg(name.toHtmlEscaped());
  m_viewOnlyText->setText(text);
  m_switchModelButton->setVisible(reachable);
  m_switchModelButton->setText(tr("Switch to %1 to Edit").arg(name));
  m_switchModelButton->setToolTip(tr("Opens %1; the history stays as it is, and this image becomes editable").arg(r->model.path));
  m_switchModelButton->setEnabled(!m_busy && !isLoading());
  m_viewOnlyBar->show();
}

void MainWindow::switchToShownModel() {
  const auto current = m_history->currentNode();
  const HistoryRecord* r = current ? m_history->record(*current) : nullptr;
  if (!r || !r->restored || r->model.path.isEmpty() || m_busy) return;
  m_switchingForEdit = true;
  requestLoad(r->model.path, QString());
  m_switchModelButton->setEnabled(false);
  statusBar()->showMessage(tr("Switching to %1: once it is loaded, change the prompt and press Edit")
                               .arg(QFileInfo(r->model.path).fileName()));
}

void MainWindow::createProjectActions(QMenu* file) {
  file->addAction(tr("Export &History..."), this, &MainWindow::chooseExportHistoryFolder)
      ->setObjectName(QStringLiteral("exportHistoryAction"));
  file->addSeparator();
  file->addAction(tr("Open &Project..."), this, &MainWindow::chooseOpenProjectFile)
      ->setObjectName(QStringLiteral("openProjectAction"));
  file->addAction(tr("Use Parameters from &Image..."), this, &MainWindow::chooseImageParametersFile);
  auto* save = file->addAction(tr("&Save Project"), this, &MainWindow::saveOrChooseProjectFile);
  save->setShortcut(QKeySequence::Save);
  auto* saveAs = file->addAction(tr("Save Project &As..."), this, &MainWindow::chooseSaveProjectFile);
  saveAs->setObjectName(QStringLiteral("saveProjectAsAction"));
  saveAs->setShortcut(QKeySequence::SaveAs);
  // Any change to the tree is something a save would keep.
  connect(this, &MainWindow::jobFinished, this, [this](bool succeeded) {
    m_unsavedChanges |= succeeded;
    m_newNodesUnsaved |= succeeded;
    updateWindowTitle();
  });
  connect(m_history, &HistoryPanel::nodeRemoved, this, [this] {
    m_unsavedChanges = true;
    updateWindowTitle();
  });
}

bool MainWindow::hasUnsavedChanges() const { return m_unsavedChanges && m_history->nodeCount() > 0; }

bool MainWindow::exportHistory(const QString& folder) {
  if (m_history->nodeCount() == 0) return false;
  const QString error = ui::exportHistory(folder, projectContent());
  if (!error.isEmpty()) {
    showError(tr("<b>Could not export the history</b><br>%1").arg(error.toHtmlEscaped()));
    return false;
  }
  rememberBrowseDir(BrowseKind::exports, folder);
  statusBar()->showMessage(tr("Exported %n image(s) to %1", nullptr, m_history->nodeCount()).arg(QFileInfo(folder).fileName()), 5000);
  return true;
}

bool MainWindow::saveProject(const QString& path) {
  const QString error = ui::saveProject(path, projectContent());
  if (!error.isEmpty()) {
    showError(tr("<b>Could not save the project</b><br>%1").arg(error.toHtmlEscaped()));
    return false;
  }
  m_projectPath = path;
  m_unsavedChanges = false;
  m_newNodesUnsaved = false;
  rememberBrowseDir(BrowseKind::projects, path);
  addRecent(RecentKind::projects, path);
  updateWindowTitle();
  statusBar()->showMessage(tr("Saved %1").arg(QFileInfo(path).fileName()), 5000);
  return true;
}

bool MainWindow::openProject(const QString& path) {
  if (m_busy) return false;  // the running job's node would land in the replaced tree
  // Read before asking or touching anything: a bad file must leave the open session as it was.
  const ProjectReadResult read = loadProject(path);
  if (!read.ok()) {
    showError(tr("<b>Could not open the project</b><br>%1").arg(read.error.toHtmlEscaped()));
    return false;
  }
  if (!maybeSaveChanges()) return false;
  // The session's nodes leave the panel, so their caches should not hold memory either.
  QMetaObject::invokeMethod(m_worker, [worker = m_worker] { worker->clearHistory(); }, Qt::QueuedConnection);
  dropDeletions(false);  // their nodes went with the worker's history; an undo would bring back the old project's
  ++m_adoptToken;  // an adoption still on its way belongs to the history being replaced
  m_adoptionPending = false;
  m_errorBanner->hide();
  m_history->clear();
  for (const HistoryRecord& r : read.content.records) m_history->addRecord(r);
  m_centerArea->setCurrentWidget(m_canvasArea);
  m_sideTabs->setCurrentWidget(m_history);
  m_projectPath = path;
  m_unsavedChanges = false;
  m_newNodesUnsaved = false;
  rememberBrowseDir(BrowseKind::projects, path);
  addRecent(RecentKind::projects, path);
  statusBar()->showMessage(tr("Opened %1").arg(QFileInfo(path).fileName()), 8000);
  adoptRestoredNodes();  // or says which model to open
  updateGenerateButton();
  return true;
}

bool MainWindow::maybeSaveChanges() {
  if (!hasUnsavedChanges()) return true;
  // Says what would be lost: new images, or only deletions (the saved project still has those images).
  const QString what = m_newNodesUnsaved ? tr("The history has images that are not saved in a project. Save them first?")
                                         : tr("Images were deleted from the history since the project was saved. "
                                              "Save the project without them?");
  QMessageBox box(QMessageBox::Question, tr("Unsaved history"), what,
                  QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel, this);
  box.setObjectName(QStringLiteral("unsavedChangesBox"));
  box.setDefaultButton(QMessageBox::Save);
  switch (box.exec()) {
    case QMessageBox::Save: return saveOrChooseProjectFile();
    case QMessageBox::Discard: return true;
    default: return false;
  }
}

void MainWindow::closeEvent(QCloseEvent* event) {
  if (!maybeSaveChanges()) {
    event->ignore();
    return;
  }
  rememberChoices();
  event->accept();
}

bool MainWindow::saveOrChooseProjectFile() {
  if (m_history->nodeCount() == 0) return true;
  return m_projectPath.isEmpty() ? chooseSaveProjectFile() : saveProject(m_projectPath);
}

bool MainWindow::chooseSaveProjectFile() {
  const QString suggested =
      m_projectPath.isEmpty() ? QDir(browseDir(BrowseKind::projects)).filePath(QStringLiteral("untitled.fisedit")) : m_projectPath;
  QString file = QFileDialog::getSaveFileName(this, tr("Save Project"), suggested, projectFilter());
  if (file.isEmpty()) return false;
  if (!file.endsWith(QLatin1String(".fisedit"), Qt::CaseInsensitive)) file += QLatin1String(".fisedit");
  return saveProject(file);
}

void MainWindow::chooseOpenProjectFile() {
  const QString file = QFileDialog::getOpenFileName(this, tr("Open Project"), browseDir(BrowseKind::projects), projectFilter());
  if (!file.isEmpty()) openProject(file);
}

void MainWindow::chooseImageParametersFile() {
  const QString file =
      QFileDialog::getOpenFileName(this, tr("Use Parameters from Image"), browseDir(BrowseKind::exports), tr("PNG images (*.png)"));
  if (!file.isEmpty()) useImageParameters(file);
}

bool MainWindow::useImageParameters(const QString& path) {
  const QString name = QFileInfo(path).fileName();
  TextChunks chunks;
  try {
    chunks = read_png_text(std::filesystem::path(QFile::encodeName(path).toStdString()));
  } catch (const Error& e) {
    showError(tr("<b>Could not read %1</b><br>%2").arg(name.toHtmlEscaped(), QString::fromStdString(e.what()).toHtmlEscaped()));
    return false;
  }
  const auto text = std::find_if(chunks.begin(), chunks.end(), [](const auto& c) { return c.first == "parameters"; });
  if (text == chunks.end()) {
    showError(tr("<b>%1 carries no generation parameters</b><br>PNGs made by fisedit or AUTOMATIC1111 (and tools "
                 "that keep its \"parameters\" text) do.")
                  .arg(name.toHtmlEscaped()));
    return false;
  }
  const auto parameters = parse_a1111_parameters(text->second);
  m_promptEditor->setPrompts(QString::fromStdString(parameters.prompt), QString::fromStdString(parameters.negative_prompt));
  const QStringList notes = m_parameters->applyImageParameters(parameters);
  statusBar()->showMessage(notes.isEmpty() ? tr("Parameters from %1").arg(name)
                                           : tr("Parameters from %1; %2").arg(name, notes.join(QStringLiteral("; "))),
                           10000);
  return true;
}

namespace {

// The one local PNG (or JPEG: a start image for image to image) a drag carries, or an empty string.
QString draggedPng(const QMimeData* mime) {
  if (!mime || !mime->hasUrls() || mime->urls().size() != 1) return QString();
  const QUrl url = mime->urls().first();
  if (!url.isLocalFile()) return QString();
  const QString file = url.toLocalFile();
  for (const char* suffix : {".png", ".jpg", ".jpeg"})
    if (file.endsWith(QLatin1String(suffix), Qt::CaseInsensitive)) return file;
  return QString();
}

// Whether a PNG carries generation parameters (fisedit's or AUTOMATIC1111's "parameters" text).
bool hasParameters(const QString& png) {
  try {
    const auto chunks = read_png_text(std::filesystem::path(QFile::encodeName(png).toStdString()));
    return std::any_of(chunks.begin(), chunks.end(), [](const auto& c) { return c.first == "parameters"; });
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (!draggedPng(event->mimeData()).isEmpty()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const QString png = draggedPng(event->mimeData());
  if (png.isEmpty()) return;
  event->acceptProposedAction();
  // A picture without parameters (a photo, a JPEG) is a start image for image to image.
  if (!png.endsWith(QLatin1String(".png"), Qt::CaseInsensitive) || !hasParameters(png))
    useStartImage(png);
  else
    useImageParameters(png);
}

void MainWindow::chooseExportHistoryFolder() {
  if (m_history->nodeCount() == 0) return;
  // A name for a new folder rather than an existing one: the export is made whole, then renamed to it.
  const QString suggested = QDir(browseDir(BrowseKind::exports)).filePath(QStringLiteral("fisedit-history"));
  const QString folder = QFileDialog::getSaveFileName(this, tr("Export History to a New Folder"), suggested);
  if (!folder.isEmpty()) exportHistory(folder);
}

}  // namespace fisedit::ui
