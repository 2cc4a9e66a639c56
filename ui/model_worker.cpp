#include "ui/model_worker.h"

#include "core/error.h"
#include "io/model_loader.h"

#include <exception>

namespace fisedit::ui {

ModelWorker::ModelWorker(QObject* parent) : QObject(parent) {}

ModelWorker::~ModelWorker() = default;

void ModelWorker::loadModel(const QString& path, const QString& configDir) {
  LoadOptions options;
  if (!configDir.isEmpty()) options.config_dir = std::filesystem::path(configDir.toStdString());
  try {
    auto model = std::make_unique<LoadedModel>(load_model(std::filesystem::path(path.toStdString()), options));
    auto summary = summarizeModel(*model, configDir);
    m_model = std::move(model);
    emit modelLoaded(summary);
  } catch (const Error& e) {
    emit loadFailed(path, QString::fromUtf8(e.what()));
  } catch (const std::bad_alloc&) {
    emit loadFailed(path, QStringLiteral("Not enough memory to load this model."));
  } catch (const std::exception& e) {
    // Not an engine Error means a bug or a library failure; still better shown than crashing the app
    // with the user's prompt in it.
    emit loadFailed(path, QStringLiteral("Unexpected failure: %1").arg(QString::fromUtf8(e.what())));
  }
}

}  // namespace fisedit::ui
