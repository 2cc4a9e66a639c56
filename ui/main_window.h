#pragma once
// The application window: the prompt and parameters on the left, the image in the middle, the history
// and the model's facts on the right. Everything that computes runs on the worker thread; the window
// only sends requests and shows answers, so it never blocks on the disk or the engine.
#include "ui/history_record.h"
#include "ui/model_summary.h"
#include "ui/project_file.h"

#include <QMainWindow>

#include <memory>
#include <optional>
#include <stop_token>

#include <QElapsedTimer>

class QAction;
class QCheckBox;
class QCloseEvent;
class QLabel;
class QMenu;
class QProgressBar;
class QPushButton;
class QShowEvent;
class QSplitter;
class QStackedWidget;
class QTabWidget;
class QThread;
class QTimer;

namespace fisedit::ui {

class HistoryPanel;
class ImageCanvas;
class MaskToolBar;
class ModelPanel;
class ModelWorker;
class ParametersPanel;
class PromptEditor;

class MainWindow : public QMainWindow {
  Q_OBJECT

public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  bool isLoading() const { return m_pendingLoads > 0; }
  bool isBusy() const { return m_busy; }  // a generation or edit is running
  const std::optional<ModelSummary>& model() const { return m_model; }
  // Whether the Generate button will edit the current image (only the prompts differ from it).
  bool willEdit() const;

  PromptEditor* promptEditor() const { return m_promptEditor; }
  ParametersPanel* parameters() const { return m_parameters; }
  ImageCanvas* canvas() const { return m_canvas; }
  HistoryPanel* history() const { return m_history; }
  MaskToolBar* maskTools() const { return m_maskTools; }

  // Live editing (issue 14): while the "Live" toggle is on, each pause in typing a prompt starts a
  // provisional edit of the committed node (the one selected when typing began); a newer text cancels
  // the edit still running at its next step (at most one running, one waiting). The canvas shows the
  // latest result, which is not a history node until Enter in the prompt box (or leaving it) keeps it.
  static constexpr int kLivePauseMs = 300;
  struct LiveStats {
    int started = 0;    // live edits sent to the worker
    int cancelled = 0;  // of those, stopped because the text changed again (or the preview was dropped)
    int finished = 0;   // results that came back and were shown
    int committed = 0;  // results that became history nodes
    int dropped = 0;    // previews (or edits under way) dropped: Esc, Live off, another node selected
  };
  const LiveStats& liveStats() const { return m_liveStats; }
  bool liveEditing() const;  // the toggle is on and the current node can be edited
  bool liveEditRunning() const { return m_liveTicket != 0; }
  // The provisional result the canvas shows, if any (not in the history).
  const std::optional<HistoryRecord>& livePreview() const { return m_livePreview; }
  QAction* liveAction() const { return m_liveAction; }
  // The engine's worker (it lives on its own thread; calls to it must be queued): for tests that keep
  // it busy to see what the window does meanwhile.
  ModelWorker* worker() const { return m_worker; }

public slots:
  // A diffusers folder or a .safetensors checkpoint. Any config folder chosen for the previous model
  // is dropped: it described that model, not this one.
  void openModel(const QString& path);
  // Reloads the current single-file checkpoint described by a diffusers config folder.
  void setConfigFolder(const QString& configDir);
  // Opens the model remembered from the last session; false when there is none.
  bool restoreLastModel();
  // What the Generate button does: an edit of the current image when willEdit(), else a new image.
  void submit();
  void cancel();
  // Enter in the prompt box: the live result for the text as it is becomes one history node (the edit
  // for it is run or finished first when the result shown is older).
  void commitLiveEdit();
  // The current image as PNG with AUTOMATIC1111's `parameters` chunk; false (and the banner) on failure.
  bool exportImage(const QString& path);
  // The whole history as a folder (history.json, NNN.png, NNN-mask.png), made under a temporary name
  // and renamed at the end; false (and the banner) on failure.
  bool exportHistory(const QString& folder);
  // The history as one .fisedit file (JSON, images embedded); false (and the banner) on failure.
  bool saveProject(const QString& path);
  // Replaces the history with a project's; a bad file is refused (the banner) and changes nothing.
  // When the open model is the one the project was made with, the worker then adopts its nodes
  // (restoredNodesAdopted) and they can be edited; otherwise they stay view-only and the status bar
  // names the model to open, which adopts them once it has loaded.
  bool openProject(const QString& path);
  // Fills the prompts and parameters from a PNG's "parameters" text (fisedit's, AUTOMATIC1111's, or
  // any tool's that copies it); also what dropping a PNG on the window does. What the image asks for
  // and fisedit cannot do (an unknown sampler, a seed beyond the seed box) is named in the status
  // bar; false (and the banner) for a file that cannot be read or carries no parameters.
  bool useImageParameters(const QString& path);
  // File > Open Image as Start... (and a JPEG, or a PNG without generation parameters, dropped on the
  // window): the picture becomes the parameters panel's start image, and Generate runs image to image
  // from it (main_window_start_image.cpp). False (and the banner) for a file that cannot be read.
  bool useStartImage(const QString& path);
  void chooseStartImage();
  // Edit > Copy Image: the current image on the clipboard as pixels and as the PNG exportImage()
  // writes (image/png, with the `parameters` text), so a paste into another tool keeps its parameters.
  // False when no image is shown.
  bool copyImage();
  // Edit > Copy Parameters: the current image's AUTOMATIC1111 parameters text, as plain text.
  bool copyParameters();
  // Edit > Paste Parameters: the clipboard's text read as AUTOMATIC1111 parameters (a bare prompt
  // fills only the prompt); false when the clipboard holds no text.
  bool pasteParameters();
  // Help > User Guide: the guide rendered from its Markdown in a dialog, images and all.
  void showUserGuide();
  // Help > Keyboard Shortcuts: every action of the window with a shortcut, read from the actions
  // themselves, and the canvas's keys and mouse gestures that are not actions.
  void showShortcuts();

public:
  // docs/user-guide.md as installed beside the app, else in the source tree the app was built from;
  // empty when neither is there.
  static QString userGuidePath();

public:
  // Nodes made or removed since the last save or open (an empty history has nothing to lose).
  bool hasUnsavedChanges() const;
  const QString& projectPath() const { return m_projectPath; }

signals:
  void modelLoaded(const fisedit::ui::ModelSummary& summary);
  void loadFailed(const QString& path, const QString& message);
  void engineReady(const QString& deviceName);
  // A generation or edit ended: with a new node, a failure, or cancelled.
  void jobFinished(bool succeeded);
  // A step of the running job: in a batch, `image` of `images` (1 of 1 otherwise); the step counts a
  // cache rebuild's steps too, as the progress bar does.
  void jobProgress(int image, int images, int step, int total);
  // The worker's session took over `adopted` nodes of the open project (0 when it could take none);
  // `viewOnly` are left view-only.
  void restoredNodesAdopted(int adopted, int viewOnly);
  // Live editing: a provisional result is shown; a live result joined the history as node `id`.
  void liveEditShown(const QString& prompt);
  void liveEditCommitted(quint64 id);

protected:
  void closeEvent(QCloseEvent* event) override;
  void showEvent(QShowEvent* event) override;
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  // The prompt fields' Enter and focus-out, for Live editing.
  bool eventFilter(QObject* watched, QEvent* event) override;

private:
  void createProjectActions(QMenu* file);
  // Save / Discard / Cancel for unsaved history; false when the user cancelled (or saving failed).
  bool maybeSaveChanges();
  // The parameters panel's lasting choices, into the settings (on close; restored on start).
  void rememberChoices();
  bool saveOrChooseProjectFile();
  bool chooseSaveProjectFile();
  void chooseOpenProjectFile();
  void chooseImageParametersFile();
  void chooseExportHistoryFolder();
  // The history to save or export, with the open model as the project's.
  ProjectContent projectContent() const;
  // Hands the view-only nodes made with the open model to the worker; when there are none, says in
  // the status bar which model to open.
  void adoptRestoredNodes();
  void onHistoryAdopted(const QHash<quint64, quint64>& ids, const QString& problems, quint64 token);
  bool madeWithOpenModel(const HistoryRecord& record) const;
  QString viewOnlyNote(const HistoryRecord& record) const;
  // What a new engine (a new, empty session) leaves of the history: all of it, view only until the
  // nodes made with the new model are adopted again.
  void keepHistoryForNewEngine();
  // The bar above the canvas for a view-only image: why, and a button that switches to its model.
  QWidget* createViewOnlyBar();
  void updateViewOnlyBar();
  void switchToShownModel();
  void createWorker();
  // The splitter's columns for a window `width` wide: the side panels a bounded share, the canvas the rest.
  void fitPanelsToWidth(int width);
  void createMenus();
  QWidget* createLeftColumn();
  QWidget* createCanvasArea();
  void createEditMenu();
  QWidget* createWelcomeBanner();
  QWidget* createErrorBanner();
  QWidget* createBuiltinModelBanner();
  // The note on the built-in model and the prompt fields' examples, for the model just loaded.
  void showModelGuidance(bool builtin);
  // The built-in toy-world model's folder (installed beside the app, else in the source tree the app
  // was built from); empty if neither is there.
  static QString builtinModelPath();
  void showError(const QString& html);
  // The project's name with an unsaved marker, and the model's.
  void updateWindowTitle();
  void requestLoad(const QString& path, const QString& configDir);
  void onModelLoaded(const ModelSummary& summary);
  void onLoadFailed(const QString& path, const QString& message);
  void onEngineReady(const QString& deviceName);
  void onProgress(int step, int total, double elapsedMs);
  void onPreview(const QImage& image);
  void onMemoryUsage(qint64 deviceBytes, qint64 cacheDeviceBytes, qint64 cacheHostBytes);
  void onNodeReady(const HistoryRecord& record);
  void onJobFailed(const QString& message);
  void onJobCancelled();
  // The edit options follow the mask: "painted" when the user starts painting, automatic once it is empty.
  void onMaskEmptyChanged(bool empty);
  // The mask the next edit reads; none when the region mode does not use one.
  std::optional<Image8> paintedMaskForEdit() const;
  // Keeps a painted region's growth within its 8-px latent cells plus the margin the user set: the
  // edge blend comes out of the margin instead of beyond it.
  static void boundPaintedGrowth(EditRequest& request);
  void showNode(quint64 id);
  // The panel removed a subtree: kept for Edit > Undo (its nodes stay in the worker's session, caches
  // included, until the undo can no longer reach them), and the status bar says how many went.
  void removeNode(quint64 id, const QList<HistoryRecord>& removed);
  // Edit > Undo (Ctrl+Z): the last mask stroke while there is one, else the last node deletion.
  void undo();
  void undoDeletion();
  void updateUndoAction();
  // Forgets the deletions that can be undone; `tellWorker`: their nodes leave the worker's session.
  void dropDeletions(bool tellWorker);
  void startJob();
  // Sends the next of m_pendingJobs to the worker; false when none is left (a batch edit's images
  // deleted meanwhile are skipped).
  bool runNextJob(std::stop_token stop);
  // A batch ended: all made (`complete`) or stopped by a cancel after an image; selects its first image
  // unless the user chose another meanwhile.
  void finishBatch(bool complete);
  // The images of `id`'s batch the worker holds (not view-only), by their number; empty outside a batch.
  QList<quint64> editableBatchMembers(quint64 id) const;
  // Whether Generate edits every image of the current node's batch ("Edit all N in batch").
  bool editsWholeBatch() const;
  void endJob();
  // Live editing (main_window_live.cpp).
  QWidget* createLiveToggle();
  void onPromptsEdited();
  void onLivePause();
  void startLiveEdit();
  void onLiveEdited(const HistoryRecord& record, quint64 ticket);
  void onLiveEditEnded(quint64 ticket, bool cancelled, const QString& message);
  // After a live edit ended: the waiting text's edit, or the commit that waited for it.
  void continueLive();
  void keepLivePreview();
  // Cancels the running live edit, forgets the waiting one and drops the preview (from the worker's
  // session too); `restoreCanvas`: the committed node's image is shown again. The text stays.
  void dropLive(bool restoreCanvas);
  // The session that held the provisional nodes is gone: forgets them without telling the worker.
  void forgetLive();
  bool liveActive() const { return m_liveTicket != 0 || m_livePreview || m_liveCommitWanted || m_livePending; }
  bool liveTextMatches(const GenerationRequest& request) const;
  void showCanvasOf(const HistoryRecord& record);
  void updateGenerateButton();
  void updateBusyIndicator();
  void chooseModelFolder();
  void chooseCheckpoint();
  void chooseConfigFolder();
  void chooseExportFile();
  void showAbout();
  void createClipboardActions(QMenu* edit);
  void createHelpMenu();
  // View > Compare Before/After needs an image with a parent to compare with.
  void updateCompareAction(bool hasParent);
  // The folder a file dialog of this kind starts in: the last one used for that kind (remembered in
  // the settings across sessions), else a sensible default (the open model's folder for models, the
  // project's for projects, the home folder).
  enum class BrowseKind { models, projects, exports };
  QString browseDir(BrowseKind kind) const;
  // `path` (a file or folder that was opened or written) was used: its folder is where the next dialog
  // of `kind` starts.
  void rememberBrowseDir(BrowseKind kind, const QString& path);
  // File > Recent Projects and Recent Models: newest first, at most kMaxRecent, kept in the settings;
  // a model's entry keeps the config folder it was opened with. Opening one that is no longer there
  // removes it and says so.
  static constexpr int kMaxRecent = 8;
  enum class RecentKind { projects, models };
  void createRecentMenus(QMenu* file);
  void addRecent(RecentKind kind, const QString& path, const QString& configDir = {});
  void fillRecentMenu(RecentKind kind);
  void openRecent(RecentKind kind, const QString& path);
  // The progress text beside the bar (not on it, where its fill would cross the words); also the
  // bar's format, for screen readers.
  void setJobProgressText(const QString& text);

  // Quits the worker's event loop and waits, so the worker (and the model it owns) is gone before the
  // window's widgets are.
  struct ThreadStopper {
    void operator()(QThread* thread) const;
  };
  std::unique_ptr<QThread, ThreadStopper> m_workerThread;
  ModelWorker* m_worker = nullptr;  // lives on m_workerThread and is deleted when it finishes
  // One per job, requested from this thread: the worker checks it between steps.
  std::stop_source m_jobStop;
  // Live editing: see liveStats(). The base, while live edits or a preview of it exist.
  QAction* m_liveAction = nullptr;
  QTimer* m_liveTimer = nullptr;
  std::optional<quint64> m_liveBase;
  std::stop_source m_liveStop;   // the running live edit's
  quint64 m_liveTicket = 0;      // the running live edit (0: none); answers with another are stale
  quint64 m_lastLiveTicket = 0;
  QString m_liveRunningPrompt, m_liveRunningNegative;
  bool m_livePending = false;       // a newer text waits for the running edit to stop
  bool m_liveCommitWanted = false;  // Enter came before the result for the text did
  bool m_liveCommitting = false;    // the history is selecting the node just kept
  std::optional<HistoryRecord> m_livePreview;
  LiveStats m_liveStats;

  std::optional<ModelSummary> m_model;
  int m_pendingLoads = 0;
  bool m_busy = false;
  QString m_projectPath;          // the .fisedit file the history was last saved to or opened from
  quint64 m_adoptToken = 0;       // the latest adoptHistory() request; older answers are ignored
  bool m_adoptionPending = false; // its answer has not come yet
  bool m_unsavedChanges = false;  // nodes made or removed since then
  bool m_newNodesUnsaved = false; // of those, nodes made (not only removals): what the quit prompt names
  // Set when the user switched models to edit a view-only image: once the model is loaded, the
  // image's parameters are shown again (a load sets the model's size), so the button offers the edit.
  bool m_switchingForEdit = false;
  // The jobs of one Generate not yet sent: a batch runs one after another, each its own node.
  struct PendingJob {
    std::optional<quint64> editBase;  // an edit of this node; none: a generation
    GenerationRequest generation;
    EditRequest edit;
  };
  QList<PendingJob> m_pendingJobs;
  int m_jobNumber = 0;                  // of the running job in its batch, from 1
  BatchTag m_batchTag;                  // id 0: a single job
  QList<quint64> m_batchMade;           // the batch's nodes so far
  std::optional<quint64> m_batchShown;  // the node the batch last showed: another current one is the user's choice
  bool m_batchFollows = true;           // the canvas follows the batch's newest image
  QElapsedTimer m_batchClock;
  QCheckBox* m_editBatchCheck = nullptr;  // "Edit all N in batch", beside the Generate button
  int m_jobEditSteps = 0;     // the running edit's own steps (0: a generation): more reported are a cache rebuild
  double m_rebuildEndMs = 0;  // when that rebuild ended, in the job's elapsed time
  // Deleted subtrees, newest last, for Edit > Undo; at most kUndoDeletions.
  struct Deletion {
    // Parents first. Not `restored`: still in the worker's session (kept there for the undo, caches
    // and all); a new session makes them view only and renumbers them (keepHistoryForNewEngine).
    QList<HistoryRecord> records;
  };
  static constexpr int kUndoDeletions = 20;
  QList<Deletion> m_deletions;
  QAction* m_undoAction = nullptr;
  QWidget* m_viewOnlyBar = nullptr;
  QLabel* m_viewOnlyText = nullptr;
  QPushButton* m_switchModelButton = nullptr;
  QImage m_shownImage;  // what Space shows after a new generation: the image it replaced

  PromptEditor* m_promptEditor = nullptr;
  ParametersPanel* m_parameters = nullptr;
  QPushButton* m_generateButton = nullptr;
  QPushButton* m_cancelButton = nullptr;
  QProgressBar* m_jobProgress = nullptr;
  QLabel* m_jobProgressText = nullptr;
  QMenu* m_recentProjectsMenu = nullptr;
  QMenu* m_recentModelsMenu = nullptr;
  QStackedWidget* m_centerArea = nullptr;
  QWidget* m_welcomeBanner = nullptr;
  QWidget* m_canvasArea = nullptr;
  ImageCanvas* m_canvas = nullptr;
  MaskToolBar* m_maskTools = nullptr;
  QAction* m_overlayAction = nullptr;
  QAction* m_exportAction = nullptr;
  QAction* m_compareAction = nullptr;
  QAction* m_copyImageAction = nullptr;
  QAction* m_canvasCopyAction = nullptr;  // Ctrl+C while the canvas has focus: text boxes keep theirs
  QAction* m_copyParametersAction = nullptr;
  QTabWidget* m_sideTabs = nullptr;
  QSplitter* m_splitter = nullptr;
  bool m_panelsFitted = false;  // the first show sized the columns to the window
  HistoryPanel* m_history = nullptr;
  ModelPanel* m_modelPanel = nullptr;
  QWidget* m_modelTab = nullptr;
  QWidget* m_errorBanner = nullptr;
  QWidget* m_builtinBanner = nullptr;
  QLabel* m_errorMessage = nullptr;
  QLabel* m_deviceLabel = nullptr;
  QLabel* m_memoryLabel = nullptr;
  QProgressBar* m_busyBar = nullptr;
  QLabel* m_busyLabel = nullptr;
};

}  // namespace fisedit::ui
