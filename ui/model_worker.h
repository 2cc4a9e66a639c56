#pragma once
// The engine's side of the window: a QObject that lives on its own thread, owns the loaded model and
// answers requests with queued signals, so a slow disk or a large checkpoint never freezes the UI.
#include "ui/model_summary.h"

#include <QObject>
#include <QString>

#include <memory>

namespace fisedit {
struct LoadedModel;
}

namespace fisedit::ui {

class ModelWorker : public QObject {
  Q_OBJECT

public:
  explicit ModelWorker(QObject* parent = nullptr);
  ~ModelWorker() override;

public slots:
  // configDir: LoadOptions::config_dir for a single-file checkpoint; empty for none.
  void loadModel(const QString& path, const QString& configDir);

signals:
  void modelLoaded(const fisedit::ui::ModelSummary& summary);
  // The previous model, if any, is still loaded.
  void loadFailed(const QString& path, const QString& message);

private:
  // Replaced only after a load succeeds, so a failed load leaves the previous model usable.
  std::unique_ptr<LoadedModel> m_model;
};

}  // namespace fisedit::ui
