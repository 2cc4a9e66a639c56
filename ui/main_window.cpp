#include "ui/main_window.h"

#include "ui/model_panel.h"
#include "ui/model_worker.h"
#include "ui/prompt_editor.h"

#include <QApplication>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QSplitter>
#include <QStackedWidget>
#include <QStatusBar>
#include <QThread>
#include <QToolButton>
#include <QVBoxLayout>

namespace fisedit::ui {
namespace {

const QString kModelPathKey = QStringLiteral("model/path");
const QString kConfigDirKey = QStringLiteral("model/configDir");

// Fixed names rather than QCoreApplication's, so the test executable and the app share one scheme
// (tests redirect it with QStandardPaths' test mode).
QSettings appSettings() { return QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")); }

QString displayName(const QString& path) { return QFileInfo(path).fileName(); }

}  // namespace

void MainWindow::ThreadStopper::operator()(QThread* thread) const {
  thread->quit();
  thread->wait();
  delete thread;
}

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  qRegisterMetaType<ModelSummary>();
  setWindowTitle(QStringLiteral("fisedit"));
  resize(1120, 720);

  m_workerThread.reset(new QThread);
  m_workerThread->setObjectName(QStringLiteral("ModelWorker"));
  m_worker = new ModelWorker;
  m_worker->moveToThread(m_workerThread.get());
  connect(m_workerThread.get(), &QThread::finished, m_worker, &QObject::deleteLater);
  connect(m_worker, &ModelWorker::modelLoaded, this, &MainWindow::onModelLoaded, Qt::QueuedConnection);
  connect(m_worker, &ModelWorker::loadFailed, this, &MainWindow::onLoadFailed, Qt::QueuedConnection);
  m_workerThread->start();

  createMenus();

  m_promptEditor = new PromptEditor;
  m_modelPanel = new ModelPanel;
  connect(m_modelPanel, &ModelPanel::configFolderRequested, this, &MainWindow::chooseConfigFolder);
  m_welcomeBanner = createWelcomeBanner();
  m_modelArea = new QStackedWidget;
  m_modelArea->addWidget(m_welcomeBanner);
  m_modelArea->addWidget(m_modelPanel);

  auto* modelScroll = new QScrollArea;
  modelScroll->setWidget(m_modelArea);
  modelScroll->setWidgetResizable(true);
  modelScroll->setFrameShape(QFrame::NoFrame);

  auto* splitter = new QSplitter(Qt::Horizontal);
  splitter->addWidget(m_promptEditor);
  splitter->addWidget(modelScroll);
  splitter->setStretchFactor(0, 3);
  splitter->setStretchFactor(1, 2);
  splitter->setSizes({640, 460});
  splitter->setHandleWidth(12);  // the handle is invisible in most styles; this is the gutter
  splitter->setChildrenCollapsible(false);

  auto* central = new QWidget;
  auto* layout = new QVBoxLayout(central);
  m_errorBanner = createErrorBanner();
  layout->addWidget(m_errorBanner);
  layout->addWidget(splitter, 1);
  setCentralWidget(central);

  m_busyLabel = new QLabel;
  m_busyBar = new QProgressBar;
  m_busyBar->setRange(0, 0);  // no progress to report from a load, only that it is under way
  m_busyBar->setMaximumWidth(140);
  statusBar()->addPermanentWidget(m_busyLabel);
  statusBar()->addPermanentWidget(m_busyBar);
  updateBusyIndicator();
}

MainWindow::~MainWindow() = default;

void MainWindow::createMenus() {
  auto* file = menuBar()->addMenu(tr("&File"));
  auto* openFolder = file->addAction(tr("Open Model &Folder..."), this, &MainWindow::chooseModelFolder);
  openFolder->setShortcut(QKeySequence::Open);
  auto* openCheckpoint = file->addAction(tr("Open &Checkpoint (.safetensors)..."), this, &MainWindow::chooseCheckpoint);
  openCheckpoint->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
  file->addSeparator();
  auto* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);

  auto* help = menuBar()->addMenu(tr("&Help"));
  help->addAction(tr("&About fisedit"), this, &MainWindow::showAbout);
}

QWidget* MainWindow::createWelcomeBanner() {
  auto* banner = new QFrame;
  banner->setObjectName(QStringLiteral("welcomeBanner"));
  banner->setFrameShape(QFrame::StyledPanel);
  auto* layout = new QVBoxLayout(banner);

  auto* text = new QLabel(tr(
      "<h3>No model loaded</h3>"
      "<p>fisedit works with Stable Diffusion 1.5 and 2.x weights, in either of the forms they are shared in:</p>"
      "<p><b>A diffusers folder</b> (File &gt; Open Model Folder...): the folder holding "
      "<tt>model_index.json</tt> and the <tt>unet</tt>, <tt>vae</tt>, <tt>text_encoder</tt>, <tt>tokenizer</tt> "
      "and <tt>scheduler</tt> subfolders, as downloaded from the Hugging Face Hub "
      "(e.g. stable-diffusion-v1-5 or stable-diffusion-2-1-base).</p>"
      "<p><b>A single-file checkpoint</b> (File &gt; Open Checkpoint...): one <tt>.safetensors</tt> file as "
      "AUTOMATIC1111 and ComfyUI keep them (e.g. v1-5-pruned-emaonly.safetensors). Its family is recognised "
      "from the weights; give it a <i>config folder</i> (a diffusers folder of the same family) to read the "
      "exact settings and count prompt tokens.</p>"
      "<p>Pickled <tt>.ckpt</tt> files are not read: convert them to .safetensors first.</p>"));
  text->setObjectName(QStringLiteral("welcomeText"));
  text->setWordWrap(true);
  text->setTextFormat(Qt::RichText);
  layout->addWidget(text);

  auto* buttons = new QHBoxLayout;
  auto* folderButton = new QPushButton(tr("Open Model Folder..."));
  auto* checkpointButton = new QPushButton(tr("Open Checkpoint..."));
  connect(folderButton, &QPushButton::clicked, this, &MainWindow::chooseModelFolder);
  connect(checkpointButton, &QPushButton::clicked, this, &MainWindow::chooseCheckpoint);
  buttons->addWidget(folderButton);
  buttons->addWidget(checkpointButton);
  buttons->addStretch(1);
  layout->addLayout(buttons);
  layout->addStretch(1);
  return banner;
}

QWidget* MainWindow::createErrorBanner() {
  // Inline rather than a modal box: the message stays readable next to the model it concerns, and a
  // failed load at startup does not block the window behind a dialog.
  auto* banner = new QFrame;
  banner->setObjectName(QStringLiteral("errorBanner"));
  banner->setStyleSheet(QStringLiteral("#errorBanner { background: #fdecea; border: 1px solid #e57373; border-radius: 4px; }"
                                       "#errorBanner QLabel { color: #5f2120; }"));
  auto* layout = new QHBoxLayout(banner);
  m_errorMessage = new QLabel;
  m_errorMessage->setObjectName(QStringLiteral("errorMessage"));
  m_errorMessage->setWordWrap(true);
  m_errorMessage->setTextFormat(Qt::RichText);
  m_errorMessage->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* close = new QToolButton;
  close->setText(QStringLiteral("✕"));
  close->setToolTip(tr("Dismiss"));
  close->setAutoRaise(true);
  connect(close, &QToolButton::clicked, banner, &QWidget::hide);
  layout->addWidget(m_errorMessage, 1);
  layout->addWidget(close, 0, Qt::AlignTop);
  banner->hide();
  return banner;
}

void MainWindow::openModel(const QString& path) { requestLoad(path, QString()); }

void MainWindow::setConfigFolder(const QString& configDir) {
  if (m_model) requestLoad(m_model->source, configDir);
}

bool MainWindow::restoreLastModel() {
  const auto settings = appSettings();
  const QString path = settings.value(kModelPathKey).toString();
  if (path.isEmpty()) return false;
  requestLoad(path, settings.value(kConfigDirKey).toString());
  return true;
}

void MainWindow::requestLoad(const QString& path, const QString& configDir) {
  m_errorBanner->hide();
  ++m_pendingLoads;
  m_busyLabel->setText(tr("Loading %1...").arg(displayName(path)));
  updateBusyIndicator();
  QMetaObject::invokeMethod(
      m_worker, [worker = m_worker, path, configDir] { worker->loadModel(path, configDir); }, Qt::QueuedConnection);
}

void MainWindow::onModelLoaded(const ModelSummary& summary) {
  --m_pendingLoads;
  updateBusyIndicator();
  m_model = summary;
  m_modelPanel->showModel(summary);
  m_modelArea->setCurrentWidget(m_modelPanel);
  m_promptEditor->setTokenizer(summary.tokenizer, summary.tokenizerNote);
  setWindowTitle(QStringLiteral("%1 — fisedit").arg(displayName(summary.source)));
  statusBar()->showMessage(tr("Loaded %1 (%2, %3)").arg(displayName(summary.source), summary.family, summary.prediction),
                           5000);

  auto settings = appSettings();
  settings.setValue(kModelPathKey, summary.source);
  settings.setValue(kConfigDirKey, summary.configDir);
  emit modelLoaded(summary);
}

void MainWindow::onLoadFailed(const QString& path, const QString& message) {
  --m_pendingLoads;
  updateBusyIndicator();
  QString text = tr("<b>Could not open %1</b><br>%2").arg(path.toHtmlEscaped(), message.toHtmlEscaped());
  if (m_model)
    text += tr("<br>%1 is still loaded.").arg(displayName(m_model->source).toHtmlEscaped());
  m_errorMessage->setText(text);
  m_errorBanner->show();
  emit loadFailed(path, message);
}

void MainWindow::updateBusyIndicator() {
  m_busyLabel->setVisible(isLoading());
  m_busyBar->setVisible(isLoading());
}

QString MainWindow::lastBrowseDir() const {
  if (m_model) return QFileInfo(m_model->source).absolutePath();
  return QDir::homePath();
}

void MainWindow::chooseModelFolder() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open Model Folder"), lastBrowseDir());
  if (!dir.isEmpty()) openModel(dir);
}

void MainWindow::chooseCheckpoint() {
  const QString file = QFileDialog::getOpenFileName(this, tr("Open Checkpoint"), lastBrowseDir(),
                                                    tr("Safetensors checkpoints (*.safetensors)"));
  if (!file.isEmpty()) openModel(file);
}

void MainWindow::chooseConfigFolder() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Config Folder (a diffusers folder of the same family)"),
                                                        lastBrowseDir());
  if (!dir.isEmpty()) setConfigFolder(dir);
}

void MainWindow::showAbout() {
  QMessageBox::about(
      this, tr("About fisedit"),
      tr("<h3>fisedit %1</h3>"
         "<p>Interactive text-to-image editing with Stable Diffusion 1.5 and 2.x.</p>"
         "<p>This version loads models (diffusers folders and single-file .safetensors checkpoints) and counts "
         "prompt tokens with the model's CLIP tokenizer. Image generation arrives with the CPU engine in a "
         "later version.</p>")
          .arg(QStringLiteral(FISEDIT_VERSION)));
}

}  // namespace fisedit::ui
