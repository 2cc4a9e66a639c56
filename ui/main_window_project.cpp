// The window's half of projects: File > Export History, Save / Open Project, and the question about
// unsaved history before it is thrown away. The files themselves are ui/project_file.cpp's.
#include "ui/history_panel.h"
#include "ui/main_window.h"
#include "ui/project_file.h"

#include <QAction>
#include <QCloseEvent>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTabWidget>

namespace fisedit::ui {
namespace {

// A function, not a constant: tr() must run after the translators are installed.
QString projectFilter() { return QObject::tr("fisedit projects (*.fisedit)"); }

ProjectContent contentOf(const HistoryPanel& history, const std::optional<ModelSummary>& model) {
  ProjectContent content;
  if (model) {
    content.modelPath = model->source;
    content.modelFamily = model->family;
  }
  content.records = history.records();
  return content;
}

}  // namespace

void MainWindow::createProjectActions(QMenu* file) {
  file->addAction(tr("Export &History..."), this, &MainWindow::chooseExportHistoryFolder);
  file->addSeparator();
  file->addAction(tr("Open &Project..."), this, &MainWindow::chooseOpenProjectFile);
  auto* save = file->addAction(tr("&Save Project"), this, &MainWindow::saveOrChooseProjectFile);
  save->setShortcut(QKeySequence::Save);
  auto* saveAs = file->addAction(tr("Save Project &As..."), this, &MainWindow::chooseSaveProjectFile);
  saveAs->setShortcut(QKeySequence::SaveAs);
  // Any change to the tree is something a save would keep.
  connect(this, &MainWindow::jobFinished, this, [this](bool succeeded) { m_unsavedChanges |= succeeded; });
  connect(m_history, &HistoryPanel::nodeRemoved, this, [this] { m_unsavedChanges = true; });
}

bool MainWindow::hasUnsavedChanges() const { return m_unsavedChanges && m_history->nodeCount() > 0; }

bool MainWindow::exportHistory(const QString& folder) {
  if (m_history->nodeCount() == 0) return false;
  const QString error = ui::exportHistory(folder, contentOf(*m_history, m_model));
  if (!error.isEmpty()) {
    showError(tr("<b>Could not export the history</b><br>%1").arg(error.toHtmlEscaped()));
    return false;
  }
  statusBar()->showMessage(tr("Exported %n image(s) to %1", nullptr, m_history->nodeCount()).arg(QFileInfo(folder).fileName()), 5000);
  return true;
}

bool MainWindow::saveProject(const QString& path) {
  const QString error = ui::saveProject(path, contentOf(*m_history, m_model));
  if (!error.isEmpty()) {
    showError(tr("<b>Could not save the project</b><br>%1").arg(error.toHtmlEscaped()));
    return false;
  }
  m_projectPath = path;
  m_unsavedChanges = false;
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
  // The session's own nodes leave the panel, so their caches should not hold memory either.
  for (const HistoryRecord& r : m_history->records())
    if (!r.restored && !r.parent) removeNode(r.id);
  m_errorBanner->hide();
  m_history->clear();
  for (const HistoryRecord& r : read.content.records) m_history->addRecord(r);
  m_centerArea->setCurrentWidget(m_canvasArea);
  m_sideTabs->setCurrentWidget(m_history);
  m_projectPath = path;
  m_unsavedChanges = false;
  QString note = tr("Opened %1").arg(QFileInfo(path).fileName());
  if (!read.content.modelPath.isEmpty() && (!m_model || QFileInfo(m_model->source) != QFileInfo(read.content.modelPath)))
    note += tr(" (made with %1: open that model to make images like these)").arg(QFileInfo(read.content.modelPath).fileName());
  statusBar()->showMessage(note, 8000);
  updateGenerateButton();
  return true;
}

bool MainWindow::maybeSaveChanges() {
  if (!hasUnsavedChanges()) return true;
  QMessageBox box(QMessageBox::Question, tr("Unsaved history"),
                  tr("The history has images that are not saved in a project. Save them first?"),
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
  if (maybeSaveChanges())
    event->accept();
  else
    event->ignore();
}

bool MainWindow::saveOrChooseProjectFile() {
  if (m_history->nodeCount() == 0) return true;
  return m_projectPath.isEmpty() ? chooseSaveProjectFile() : saveProject(m_projectPath);
}

bool MainWindow::chooseSaveProjectFile() {
  const QString suggested = m_projectPath.isEmpty() ? QDir(lastBrowseDir()).filePath(QStringLiteral("untitled.fisedit")) : m_projectPath;
  QString file = QFileDialog::getSaveFileName(this, tr("Save Project"), suggested, projectFilter());
  if (file.isEmpty()) return false;
  if (!file.endsWith(QLatin1String(".fisedit"), Qt::CaseInsensitive)) file += QLatin1String(".fisedit");
  return saveProject(file);
}

void MainWindow::chooseOpenProjectFile() {
  const QString dir = m_projectPath.isEmpty() ? lastBrowseDir() : QFileInfo(m_projectPath).absolutePath();
  const QString file = QFileDialog::getOpenFileName(this, tr("Open Project"), dir, projectFilter());
  if (!file.isEmpty()) openProject(file);
}

void MainWindow::chooseExportHistoryFolder() {
  if (m_history->nodeCount() == 0) return;
  // A name for a new folder rather than an existing one: the export is made whole, then renamed to it.
  const QString suggested = QDir(lastBrowseDir()).filePath(QStringLiteral("fisedit-history"));
  const QString folder = QFileDialog::getSaveFileName(this, tr("Export History to a New Folder"), suggested);
  if (!folder.isEmpty()) exportHistory(folder);
}

}  // namespace fisedit::ui
