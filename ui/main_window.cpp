// The main window (main_window.h): construction, the worker thread, menus, the left column, model loading.
#include "ui/main_window.h"

#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/model_panel.h"
#include "ui/model_worker.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QSplitter>
#include <QStackedWidget>
#include <QStatusBar>
#include <QTabWidget>
#include <QThread>
#include <QVBoxLayout>

#include <algorithm>
#include <utility>

namespace fisedit::ui {

// Fixed names rather than QCoreApplication's, so the test executable and the app share one scheme
// (tests redirect it with QStandardPaths' test mode).
QSettings appSettings() { return QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")); }

namespace {

const QString kModelPathKey = QStringLiteral("model/path");
const QString kConfigDirKey = QStringLiteral("model/configDir");

QString displayName(const QString& path) { return QFileInfo(path).fileName(); }

}  // namespace

void MainWindow::ThreadStopper::operator()(QThread* thread) const {
  thread->quit();
  thread->wait();
  delete thread;
}

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  qRegisterMetaType<ModelSummary>();
  qRegisterMetaType<HistoryRecord>();
  setWindowTitle(QStringLiteral("fisedit"));
  resize(1280, 800);
  setAcceptDrops(true);  // a PNG dropped on the window lends its parameters (useImageParameters)
  createWorker();

  m_modelPanel = new ModelPanel;
  connect(m_modelPanel, &ModelPanel::configFolderRequested, this, &MainWindow::chooseConfigFolder);
  auto* modelScroll = new QScrollArea;
  modelScroll->setWidget(m_modelPanel);
  modelScroll->setWidgetResizable(true);
  modelScroll->setFrameShape(QFrame::NoFrame);
  m_modelTab = modelScroll;

  m_history = new HistoryPanel;
  connect(m_history, &HistoryPanel::currentNodeChanged, this, &MainWindow::showNode);
  connect(m_history, &HistoryPanel::nodeRemoved, this, &MainWindow::removeNode);
  m_sideTabs = new QTabWidget;
  m_sideTabs->addTab(m_history, tr("History"));
  m_sideTabs->addTab(m_modelTab, tr("Model"));

  m_welcomeBanner = createWelcomeBanner();
  m_centerArea = new QStackedWidget;
  m_centerArea->addWidget(m_welcomeBanner);
  m_centerArea->addWidget(createCanvasArea());

  auto* splitter = new QSplitter(Qt::Horizontal);
  m_splitter = splitter;
  splitter->setObjectName(QStringLiteral("mainSplitter"));
  splitter->addWidget(createLeftColumn());
  splitter->addWidget(m_centerArea);
  splitter->addWidget(m_sideTabs);
  splitter->setStretchFactor(0, 0);
  splitter->setStretchFactor(1, 1);
  splitter->setStretchFactor(2, 0);
  splitter->setHandleWidth(12);  // the handle is invisible in most styles; this is the gutter
  splitter->setChildrenCollapsible(false);
  splitter->setCollapsible(2, true);  // dragged shut, the history and model panel give the canvas all the room
  // Explicit minimums below their hints, so the three columns fit an 800 px wide window (the canvas
  // scales the image down; the history's rows wrap).
  m_sideTabs->setMinimumWidth(150);
  m_centerArea->setMinimumWidth(200);
  fitPanelsToWidth(1280);

  auto* central = new QWidget;
  auto* layout = new QVBoxLayout(central);
  m_errorBanner = createErrorBanner();
  layout->addWidget(m_errorBanner);
  m_builtinBanner = createBuiltinModelBanner();
  layout->addWidget(m_builtinBanner);
  layout->addWidget(splitter, 1);
  setCentralWidget(central);
  createMenus();

  m_deviceLabel = new QLabel;
  m_deviceLabel->setObjectName(QStringLiteral("deviceLabel"));
  m_memoryLabel = new QLabel;
  m_memoryLabel->setObjectName(QStringLiteral("memoryLabel"));
  m_busyLabel = new QLabel;
  m_busyBar = new QProgressBar;
  m_busyBar->setRange(0, 0);  // no progress to report from a load, only that it is under way
  m_busyBar->setMaximumWidth(140);
  statusBar()->addPermanentWidget(m_busyLabel);
  statusBar()->addPermanentWidget(m_busyBar);
  statusBar()->addPermanentWidget(m_memoryLabel);
  statusBar()->addPermanentWidget(m_deviceLabel);
  updateBusyIndicator();
  updateGenerateButton();
}

MainWindow::~MainWindow() {
  // A running job stops at its next step instead of holding up the thread's quit.
  m_jobStop.request_stop();
  m_liveStop.request_stop();
}

void MainWindow::createWorker() {
  m_workerThread.reset(new QThread);
  m_workerThread->setObjectName(QStringLiteral("ModelWorker"));
  m_worker = new ModelWorker;
  m_worker->moveToThread(m_workerThread.get());
  connect(m_workerThread.get(), &QThread::finished, m_worker, &QObject::deleteLater);
  const auto queued = Qt::QueuedConnection;
  connect(m_worker, &ModelWorker::modelLoaded, this, &MainWindow::onModelLoaded, queued);
  connect(m_worker, &ModelWorker::loadFailed, this, &MainWindow::onLoadFailed, queued);
  connect(m_worker, &ModelWorker::engineReady, this, &MainWindow::onEngineReady, queued);
  connect(m_worker, &ModelWorker::progress, this, &MainWindow::onProgress, queued);
  connect(m_worker, &ModelWorker::preview, this, &MainWindow::onPreview, queued);
  connect(m_worker, &ModelWorker::memoryUsage, this, &MainWindow::onMemoryUsage, queued);
  connect(m_worker, &ModelWorker::generated, this, &MainWindow::onNodeReady, queued);
  connect(m_worker, &ModelWorker::edited, this, &MainWindow::onNodeReady, queued);
  connect(m_worker, &ModelWorker::historyAdopted, this, &MainWindow::onHistoryAdopted, queued);
  connect(m_worker, &ModelWorker::failed, this, &MainWindow::onJobFailed, queued);
  connect(m_worker, &ModelWorker::cancelled, this, &MainWindow::onJobCancelled, queued);
  connect(m_worker, &ModelWorker::liveEdited, this, &MainWindow::onLiveEdited, queued);
  connect(m_worker, &ModelWorker::liveEditEnded, this, &MainWindow::onLiveEditEnded, queued);
  m_workerThread->start();
}

void MainWindow::createMenus() {
  auto* file = menuBar()->addMenu(tr("&File"));
  auto* openFolder = file->addAction(tr("Open Model &Folder..."), this, &MainWindow::chooseModelFolder);
  openFolder->setObjectName(QStringLiteral("openModelFolderAction"));
  openFolder->setShortcut(QKeySequence::Open);
  auto* openCheckpoint = file->addAction(tr("Open &Checkpoint (.safetensors)..."), this, &MainWindow::chooseCheckpoint);
  openCheckpoint->setObjectName(QStringLiteral("openCheckpointAction"));
  openCheckpoint->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
  auto* openStart = file->addAction(tr("Open Image as &Start..."), this, &MainWindow::chooseStartImage);  // image to image
  openStart->setObjectName(QStringLiteral("openStartImageAction"));
  file->addSeparator();
  m_exportAction = file->addAction(tr("&Export Image..."), this, &MainWindow::chooseExportFile);
  m_exportAction->setObjectName(QStringLiteral("exportImageAction"));
  m_exportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
  createProjectActions(file);
  createRecentMenus(file);
  file->addSeparator();
  auto* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  quit->setShortcut(QKeySequence::Quit);
  createEditMenu();

  auto* image = menuBar()->addMenu(tr("&Image"));
  auto* generate = image->addAction(tr("&Generate / Edit"), this, &MainWindow::submit);
  generate->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Return), QKeySequence(Qt::CTRL | Qt::Key_Enter)});
  auto* cancel = image->addAction(tr("&Cancel"), this, &MainWindow::cancel);
  cancel->setShortcut(QKeySequence(Qt::Key_Escape));
  image->addSeparator();
  image->addAction(m_liveAction);

  auto* view = menuBar()->addMenu(tr("&View"));
  auto* zoomIn = view->addAction(tr("Zoom &In"), m_canvas, &ImageCanvas::zoomIn);
  zoomIn->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Equal), QKeySequence::ZoomIn});
  auto* zoomOut = view->addAction(tr("Zoom &Out"), m_canvas, &ImageCanvas::zoomOut);
  zoomOut->setShortcuts({QKeySequence(Qt::CTRL | Qt::Key_Minus), QKeySequence::ZoomOut});
  auto* fit = view->addAction(tr("&Fit to Window"), m_canvas, &ImageCanvas::fitToWindow);
  fit->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_0));
  view->addAction(tr("&Actual Size"), m_canvas, &ImageCanvas::setActualSize);
  view->addSeparator();
  view->addAction(m_overlayAction);
  view->addAction(m_compareAction);

  createHelpMenu();
}

QWidget* MainWindow::createLeftColumn() {
  auto* column = new QWidget;
  auto* layout = new QVBoxLayout(column);
  layout->setContentsMargins(0, 0, 4, 0);
  m_promptEditor = new PromptEditor;
  m_parameters = new ParametersPanel;
  m_parameters->restoreChoices(appSettings());
  connect(m_promptEditor, &PromptEditor::promptsChanged, this, &MainWindow::updateGenerateButton);
  connect(m_parameters, &ParametersPanel::changed, this, &MainWindow::updateGenerateButton);
  connect(m_parameters, &ParametersPanel::reuseSeedRequested, this, [this] {
    if (const auto id = m_history->currentNode()) m_parameters->showRequest(m_history->record(*id)->request);
  });
  connect(m_parameters, &ParametersPanel::deviceChanged, this, [this](DeviceChoice choice) {
    QMetaObject::invokeMethod(m_worker, [worker = m_worker, choice] { worker->setDevice(choice); }, Qt::QueuedConnection);
  });
  layout->addWidget(m_promptEditor, 1);
  layout->addWidget(m_parameters);

  // Scrolls rather than clips on short screens: the parameters are taller than the prompts need.
  auto* scroll = new QScrollArea;
  scroll->setObjectName(QStringLiteral("leftScroll"));
  scroll->setWidget(column);
  scroll->setWidgetResizable(true);
  scroll->setFrameShape(QFrame::NoFrame);
  scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);

  // The button and the progress sit below the scrolled part, so they stay in view at any height.
  auto* outer = new QWidget;
  outer->setObjectName(QStringLiteral("leftColumn"));
  auto* outerLayout = new QVBoxLayout(outer);
  outerLayout->setContentsMargins(0, 0, 0, 0);
  outerLayout->addWidget(scroll, 1);

  // Shown while the selected image belongs to a batch and only its prompt was changed: the edit is
  // then made of every image of the batch, each a child of its own, together again a batch.
  m_editBatchCheck = new QCheckBox(tr("Edit all in batch"));
  m_editBatchCheck->setObjectName(QStringLiteral("editBatchCheck"));
  m_editBatchCheck->setToolTip(tr("Apply the prompt change to every image of the selected image's batch, not only "
                                  "to the selected one: each edit becomes a child of its image."));
  m_editBatchCheck->hide();
  connect(m_editBatchCheck, &QCheckBox::toggled, this, &MainWindow::updateGenerateButton);
  outerLayout->addWidget(m_editBatchCheck);

  m_generateButton = new QPushButton(tr("Generate"));
  m_generateButton->setObjectName(QStringLiteral("generateButton"));
  m_generateButton->setDefault(true);
  m_generateButton->setMinimumHeight(34);
  connect(m_generateButton, &QPushButton::clicked, this, &MainWindow::submit);
  auto* generateRow = new QHBoxLayout;
  generateRow->addWidget(m_generateButton, 1);
  generateRow->addWidget(createLiveToggle());
  outerLayout->addLayout(generateRow);

  auto* progressRow = new QHBoxLayout;
  m_jobProgress = new QProgressBar;
  m_jobProgress->setObjectName(QStringLiteral("jobProgress"));
  // The words go beside the bar: drawn on it, the fill runs through them and half the text is lost.
  m_jobProgress->setTextVisible(false);
  m_jobProgressText = new QLabel;
  m_jobProgressText->setObjectName(QStringLiteral("jobProgressText"));
  m_jobProgressText->setWordWrap(true);
  m_jobProgressText->setAlignment(Qt::AlignLeft | Qt::AlignTop);
  // Two lines, always: the rebuild's message wraps, and the column must not change height with it.
  m_jobProgressText->setFixedHeight(2 * m_jobProgressText->fontMetrics().lineSpacing() + 2);
  m_jobProgress->setFixedHeight(8);
  m_cancelButton = new QPushButton(tr("Cancel"));
  m_cancelButton->setObjectName(QStringLiteral("cancelButton"));
  m_cancelButton->setToolTip(tr("Stop after the current step (Esc)"));
  connect(m_cancelButton, &QPushButton::clicked, this, &MainWindow::cancel);
  progressRow->addWidget(m_jobProgressText, 1);
  progressRow->addWidget(m_cancelButton, 0, Qt::AlignTop);
  outerLayout->addLayout(progressRow);
  outerLayout->addWidget(m_jobProgress);
  // Their room is kept while hidden: the prompt box above does not jump when a job starts.
  for (QWidget* w : {static_cast<QWidget*>(m_jobProgress), static_cast<QWidget*>(m_cancelButton),
                     static_cast<QWidget*>(m_jobProgressText)}) {
    QSizePolicy policy = w->sizePolicy();
    policy.setRetainSizeWhenHidden(true);
    w->setSizePolicy(policy);
    w->hide();
  }
  // As wide as the parameters need (nothing clipped: the column scrolls only vertically), no wider.
  const int needed = column->minimumSizeHint().width() + scroll->verticalScrollBar()->sizeHint().width() + 4;
  outer->setMinimumWidth(std::max(260, needed));
  return outer;
}

void MainWindow::fitPanelsToWidth(int width) {
  // The canvas gets the space: the side columns take a share of the width, within bounds, and the
  // image what is left (at 800 px, about 330 px; at 1280, 600).
  const int leftMin = m_splitter->widget(0)->minimumWidth();
  const int left = std::clamp(width * 28 / 100, leftMin, std::max(leftMin, 360));
  const int right = std::clamp(width * 20 / 100, 150, 320);
  m_splitter->setSizes({left, std::max(200, width - left - right - 2 * m_splitter->handleWidth()), right});
}

void MainWindow::showEvent(QShowEvent* event) {
  QMainWindow::showEvent(event);
  if (!std::exchange(m_panelsFitted, true)) fitPanelsToWidth(width());
}

void MainWindow::openModel(const QString& path) { requestLoad(path, QString()); }

void MainWindow::setConfigFolder(const QString& configDir) {
  if (m_model) requestLoad(m_model->source, configDir);
}

void MainWindow::rememberChoices() {
  auto settings = appSettings();
  m_parameters->saveChoices(settings);
}

bool MainWindow::restoreLastModel() {
  const auto settings = appSettings();
  const QString path = settings.value(kModelPathKey).toString();
  if (path.isEmpty()) {  // no model chosen yet: start on the built-in one, so everything can be tried
    const QString builtin = builtinModelPath();
    if (builtin.isEmpty()) return false;
    requestLoad(builtin, QString());
    return true;
  }
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
  forgetLive();  // the live edits' session went with the previous model
  --m_pendingLoads;
  updateBusyIndicator();
  m_model = summary;
  m_modelPanel->showModel(summary);
  m_centerArea->setCurrentWidget(m_canvasArea);
  m_sideTabs->setCurrentWidget(m_modelTab);  // the new model's facts first
  keepHistoryForNewEngine();
  m_parameters->setModelSize(summary.imageSize);
  if (std::exchange(m_switchingForEdit, false))  // the image to edit keeps its size and parameters
    if (const auto current = m_history->currentNode()) m_parameters->showRequest(m_history->record(*current)->request);
  m_promptEditor->setTokenizer(summary.tokenizer, summary.tokenizerNote);
  updateWindowTitle();
  statusBar()->showMessage(tr("Loaded %1 (%2, %3)").arg(displayName(summary.source), summary.family, summary.prediction),
                           5000);

  // The built-in model is what fisedit starts on while none is chosen, so it is never remembered.
  const QString builtinPath = builtinModelPath();
  const bool builtin = !builtinPath.isEmpty() && QFileInfo(summary.source) == QFileInfo(builtinPath);
  showModelGuidance(builtin);
  if (!builtin) {
    {
      auto settings = appSettings();
      settings.setValue(kModelPathKey, summary.source);
      settings.setValue(kConfigDirKey, summary.configDir);
    }
    rememberBrowseDir(BrowseKind::models, summary.source);
    addRecent(RecentKind::models, summary.source, summary.configDir);
  }
  emit modelLoaded(summary);
}

void MainWindow::onLoadFailed(const QString& path, const QString& message) {
  --m_pendingLoads;
  m_switchingForEdit = false;
  updateBusyIndicator();
  QString text = tr("<b>Could not open %1</b><br>%2").arg(path.toHtmlEscaped(), message.toHtmlEscaped());
  if (m_model)
    text += tr("<br>%1 is still loaded.").arg(displayName(m_model->source).toHtmlEscaped());
  showError(text);
  emit loadFailed(path, message);
}

void MainWindow::updateWindowTitle() {
  // "house.fisedit* — toyworld — fisedit": the project (with the unsaved marker), then the model.
  QStringList parts;
  if (!m_projectPath.isEmpty()) parts << displayName(m_projectPath) + QStringLiteral("[*]");
  else if (m_history->nodeCount() > 0) parts << tr("Untitled") + QStringLiteral("[*]");
  if (m_model) parts << displayName(m_model->source);
  parts << QStringLiteral("fisedit");
  setWindowTitle(parts.join(QStringLiteral(" — ")));
  setWindowModified(hasUnsavedChanges());
}

void MainWindow::showError(const QString& html) {
  m_errorMessage->setText(html);
  m_errorBanner->show();
}

void MainWindow::updateBusyIndicator() {
  m_busyLabel->setVisible(isLoading());
  m_busyBar->setVisible(isLoading());
}

}  // namespace fisedit::ui
