// The engine's worker (model_worker.h): loading, device, generations, edits, history, off the UI thread.
#include "ui/model_worker.h"
#include "ui/latent_preview.h"

#include "core/error.h"
#include "io/model_loader.h"
#include "pipeline/edit_session.h"

#include <QElapsedTimer>
#include <QStringList>

#include <cstdio>
#include <exception>
#include <unistd.h>

namespace fisedit::ui {

ModelWorker::ModelWorker(QObject* parent) : QObject(parent) {}

// Members are declared so that the session goes before the pipeline, the pipeline before the backend.
ModelWorker::~ModelWorker() = default;

void ModelWorker::loadModel(const QString& path, const QString& configDir) {
  LoadOptions options;
  if (!configDir.isEmpty()) options.config_dir = std::filesystem::path(configDir.toStdString());
  try {
    auto model = std::make_shared<const LoadedModel>(load_model(std::filesystem::path(path.toStdString()), options));
    auto summary = summarizeModel(*model, configDir);
    m_session.reset();
    m_pipeline.reset();
    m_model = std::move(model);
    m_identity = {summary.source, summary.family, summary.fingerprint};
    emit modelLoaded(summary);
  } catch (const Error& e) {
    emit loadFailed(path, QString::fromUtf8(e.what()));
    return;
  } catch (const std::bad_alloc&) {
    emit loadFailed(path, QStringLiteral("Not enough memory to load this model."));
    return;
  } catch (const std::exception& e) {
    // Not an engine Error means a bug or a library failure; still better shown than crashing the app
    // with the user's prompt in it.
    emit loadFailed(path, QStringLiteral("Unexpected failure: %1").arg(QString::fromUtf8(e.what())));
    return;
  }
  runJob([this] { startEngine(); });
}

void ModelWorker::setDevice(DeviceChoice choice) {
  if (choice == m_device && m_backend) return;
  runJob([this, choice] {
    // Made before anything is dropped, so a device that cannot be used leaves the current one working.
    auto backend = make_backend(choice);
    m_device = choice;
    m_session.reset();
    m_pipeline.reset();
    m_backend = std::move(backend);
    if (m_model) startEngine();
  });
}

void ModelWorker::startEngine() {
  if (!m_backend) m_backend = make_backend(m_device);
  m_session.reset();
  m_liveNodes.clear();
  m_pipeline = std::make_unique<StableDiffusion>(m_model, *m_backend);
  m_editingPrepared = false;
  if (const auto memory = m_backend->device_memory()) {
    const std::size_t held = memory->in_use + kWorkingBytes;  // weights + working
    const auto share = static_cast<std::size_t>(kDeviceCacheShare * static_cast<double>(memory->total));
    const std::size_t device_budget = share > held ? share - held : 0;
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    const std::size_t ram = pages > 0 && page > 0 ? static_cast<std::size_t>(pages) * static_cast<std::size_t>(page) : 0;
    const std::size_t budget = std::max(device_budget, std::min(kGpuCacheBudgetBytes, ram / 10 * 4) + device_budget);
    m_session = std::make_unique<EditSession>(*m_pipeline, budget, device_budget);
  } else {
    m_session = std::make_unique<EditSession>(*m_pipeline, kCacheBudgetBytes);
  }
  emit engineReady(QString::fromStdString(m_backend->name()));
}

template <typename Job>
void ModelWorker::runJob(Job&& job) {
  try {
    job();
  } catch (const Error& e) {
    if (e.code() == ErrorCode::cancelled)
      emit cancelled();
    else
      emit failed(QString::fromUtf8(e.what()));
  } catch (const std::bad_alloc&) {
    emit failed(QStringLiteral("Not enough memory for this image: try a smaller size."));
  } catch (const std::exception& e) {
    emit failed(QStringLiteral("Unexpected failure: %1").arg(QString::fromUtf8(e.what())));
  }
  reportMemory();  // a failed or cancelled job may have freed or evicted as much as a finished one
}

void ModelWorker::reportMemory() {
  if (!m_session) return;
  const auto device = m_backend->device_memory();
  emit memoryUsage(device ? static_cast<qint64>(device->in_use) : -1, static_cast<qint64>(m_session->cache_bytes_device()),
                   static_cast<qint64>(m_session->cache_bytes_host()));
}

ProgressCallback ModelWorker::progressReporter(const QImage& base, int editSteps) {
  // Shared: the session copies the callback for each run of a rebuild, and the interval spans them all.
  auto sincePreview = std::make_shared<QElapsedTimer>();
  return [this, sincePreview, base, editSteps](const GenerationProgress& p) {
    emit progress(p.step, p.total, p.elapsed_ms);
    // The last step's latents are decoded next: the real image is moments away.
    if (p.latents.empty() || p.step % 2 != 0 || p.step == p.total) return;
    if (sincePreview->isValid() && sincePreview->elapsed() < kPreviewIntervalMs) return;
    const bool edit = editSteps > 0;
    // An edit's detection steps change the whole latent and its region is not known yet; a rebuild
    // recomputes other images: the base image stays shown until the region's own steps run.
    if (edit && (p.region.empty() || p.step <= p.total - editSteps)) return;
    QImage image = edit ? editPreview(base, p.latents, p.latent_channels, p.latent_height, p.latent_width, p.region)
                        : latentPreview(p.latents, p.latent_channels, p.latent_height, p.latent_width);
    if (image.isNull()) return;  // not a 4-channel latent space
    sincePreview->start();
    emit preview(image);
  };
}

void ModelWorker::generate(const GenerationRequest& request, std::stop_token stop) {
  runJob([&] {
    if (!m_session) throw Error(ErrorCode::invalid_argument, "Open a model first (File > Open Model Folder...).");
    if (stop.stop_requested()) throw Error(ErrorCode::cancelled, "cancelled");
    QElapsedTimer clock;
    clock.start();
    const NodeId id = m_session->generate(request, progressReporter(), stop);
    emit generated(record(id, static_cast<double>(clock.elapsed())));
    prepareEditing(id, stop);
  });
}

void ModelWorker::prepareEditing(quint64 id, std::stop_token stop) {
  // On a GPU the first edit of a process pays for plans and memory the later ones find ready (about
  // 200 ms at SD2 768); the moment after the first generation, while the user looks at the image and
  // types the change, pays it instead. Once per engine, and never on the CPU, where a throwaway edit
  // costs seconds and there are no plans to make. A failure here only means the first edit pays.
  if (m_editingPrepared || m_backend->kind() == DeviceKind::cpu || stop.stop_requested()) return;
  m_editingPrepared = true;
  try {
    m_session->prepare_editing(id, stop);
  } catch (const Error& e) {
    std::fprintf(stderr, "fisedit: preparing the first edit failed (it will pay for itself): %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "fisedit: preparing the first edit ran out of memory (it will pay for itself)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fisedit: preparing the first edit failed (it will pay for itself): %s\n", e.what());
  }
}

void ModelWorker::edit(quint64 baseNode, const EditRequest& request, std::stop_token stop) {
  runJob([&] {
    if (!m_session || !m_session->contains(baseNode))
      throw Error(ErrorCode::invalid_argument, "The image to edit is no longer in the history.");
    if (stop.stop_requested()) throw Error(ErrorCode::cancelled, "cancelled");
    QElapsedTimer clock;
    clock.start();
    const auto& base = m_session->node(baseNode);
    // The steps the edit runs: an image-to-image base ran only the last ones (start_step).
    const ProgressCallback reporter =
        progressReporter(toQImage(base.result.image), base.request.steps - start_step(base.request));
    const NodeId id = m_session->edit(baseNode, request, reporter, stop);
    emit edited(record(id, static_cast<double>(clock.elapsed())));
  });
}

void ModelWorker::liveEdit(quint64 baseNode, const EditRequest& request, std::stop_token stop, quint64 ticket) {
  try {
    if (!m_session || !m_session->contains(baseNode))
      throw Error(ErrorCode::invalid_argument, "The image to edit is no longer in the history.");
    if (stop.stop_requested()) throw Error(ErrorCode::cancelled, "cancelled");
    QElapsedTimer clock;
    clock.start();
    // No step previews: the result itself comes about as soon, and making them would slow it down.
    const NodeId id = m_session->edit(baseNode, request, {}, stop);
    m_liveNodes.insert(id);
    emit liveEdited(record(id, static_cast<double>(clock.elapsed())), ticket);
  } catch (const Error& e) {
    emit liveEditEnded(ticket, e.code() == ErrorCode::cancelled, QString::fromUtf8(e.what()));
  } catch (const std::bad_alloc&) {
    emit liveEditEnded(ticket, false, QStringLiteral("Not enough memory for this image: try a smaller size."));
  } catch (const std::exception& e) {
    emit liveEditEnded(ticket, false, QStringLiteral("Unexpected failure: %1").arg(QString::fromUtf8(e.what())));
  }
  reportMemory();
}

void ModelWorker::keepLiveNode(quint64 node) { m_liveNodes.remove(node); }

void ModelWorker::dropLiveNode(quint64 node) {
  if (!m_liveNodes.remove(node)) return;
  removeNode(node);
}

void ModelWorker::removeNode(quint64 node) {
  if (!m_session || !m_session->contains(node)) return;
  m_session->remove(node);
  reportMemory();
}

void ModelWorker::clearHistory() {
  if (!m_session) return;
  for (const NodeId root : m_session->roots()) m_session->remove(root);
  reportMemory();
}

void ModelWorker::adoptHistory(const QList<HistoryRecord>& records, quint64 token) {
  QHash<quint64, quint64> ids;
  QStringList problems;
  if (!m_session) {
    emit historyAdopted(ids, QStringLiteral("no model is open"), token);
    return;
  }
  for (const HistoryRecord& r : records) {
    if (r.parent && !ids.contains(*r.parent)) continue;  // the replay would start from a node that is not there
    EditSession::Node node;
    if (r.parent) {
      node.parent = ids.value(*r.parent);
      node.edit = r.edit;
      node.changed_region = toImage8(r.changedRegion.convertToFormat(QImage::Format_Grayscale8));
      node.stats = r.stats;
    }
    node.request = r.request;
    node.result.image = toImage8(r.image);
    node.result.timings = r.timings;
    try {
      ids.insert(r.id, m_session->adopt(std::move(node)));
    } catch (const Error& e) {
      problems << QStringLiteral("\"%1\": %2").arg(QString::fromStdString(r.request.prompt), QString::fromUtf8(e.what()));
    } catch (const std::bad_alloc&) {
      problems << QStringLiteral("\"%1\": not enough memory").arg(QString::fromStdString(r.request.prompt));
    }
  }
  emit historyAdopted(ids, problems.join(QStringLiteral("; ")), token);
}

HistoryRecord ModelWorker::record(quint64 id, double totalMs) const {
  const auto& node = m_session->node(id);
  HistoryRecord r;
  r.id = id;
  r.request = node.request;
  r.image = toQImage(node.result.image);
  r.totalMs = totalMs;
  r.timings = node.result.timings;
  r.model = m_identity;
  r.device = QString::fromStdString(m_backend->name());
  if (node.parent) {
    r.parent = *node.parent;
    r.parentPrompt = QString::fromStdString(m_session->node(*node.parent).request.prompt);
    r.changedRegion = toQImage(node.changed_region);
    r.stats = node.stats;
    if (node.edit) r.edit = *node.edit;  // with its painted mask: a project keeps it for the replay
    r.regeneration = node.regeneration;
  }
  return r;
}

}  // namespace fisedit::ui
