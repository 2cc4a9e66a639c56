#pragma once
// The application window: menus, the prompt editor, and what the loaded model is. Models load on a
// worker thread; the window only sends requests and shows answers, so it never blocks on the disk.
#include "ui/model_summary.h"

#include <QMainWindow>

#include <memory>
#include <optional>

class QLabel;
class QProgressBar;
class QStackedWidget;
class QThread;

namespace fisedit::ui {

class ModelPanel;
class ModelWorker;
class PromptEditor;

class MainWindow : public QMainWindow {
  Q_OBJECT

public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  bool isLoading() const { return m_pendingLoads > 0; }
  const std::optional<ModelSummary>& model() const { return m_model; }

public slots:
  // A diffusers folder or a .safetensors checkpoint. Any config folder chosen for the previous model
  // is dropped: it described that model, not this one.
  void openModel(const QString& path);
  // Reloads the current single-file checkpoint described by a diffusers config folder.
  void setConfigFolder(const QString& configDir);
  // Opens the model remembered from the last session; false when there is none.
  bool restoreLastModel();

signals:
  void modelLoaded(const fisedit::ui::ModelSummary& summary);
  void loadFailed(const QString& path, const QString& message);

private:
  void createMenus();
  QWidget* createWelcomeBanner();
  QWidget* createErrorBanner();
  void requestLoad(const QString& path, const QString& configDir);
  void onModelLoaded(const ModelSummary& summary);
  void onLoadFailed(const QString& path, const QString& message);
  void updateBusyIndicator();
  void chooseModelFolder();
  void chooseCheckpoint();
  void chooseConfigFolder();
  void showAbout();
  QString lastBrowseDir() const;

  // Quits the worker's event loop and waits, so the worker (and the model it owns) is gone before the
  // window's widgets are.
  struct ThreadStopper {
    void operator()(QThread* thread) const;
  };
  std::unique_ptr<QThread, ThreadStopper> m_workerThread;
  ModelWorker* m_worker = nullptr;  // lives on m_workerThread and is deleted when it finishes

  std::optional<ModelSummary> m_model;
  int m_pendingLoads = 0;

  PromptEditor* m_promptEditor = nullptr;
  QStackedWidget* m_modelArea = nullptr;
  QWidget* m_welcomeBanner = nullptr;
  ModelPanel* m_modelPanel = nullptr;
  QWidget* m_errorBanner = nullptr;
  QLabel* m_errorMessage = nullptr;
  QProgressBar* m_busyBar = nullptr;
  QLabel* m_busyLabel = nullptr;
};

}  // namespace fisedit::ui
