#pragma once
// The engine's side of the window: a QObject that lives on its own thread and owns everything that
// computes: the loaded model, the backend, the StableDiffusion pipeline and the EditSession (the
// history tree with its activation caches). The window sends requests with queued calls and gets
// queued signals back, so loading, generating and editing never freeze the UI.
#include "ui/history_record.h"
#include "ui/model_summary.h"

#include "backend/device.h"

#include <QHash>
#include <QImage>
#include <QList>
#include <QObject>
#include <QSet>
#include <QString>

#include <memory>
#include <stop_token>

namespace fisedit {
struct LoadedModel;
class Backend;
class StableDiffusion;
class EditSession;
}  // namespace fisedit

namespace fisedit::ui {

class ModelWorker : public QObject {
  Q_OBJECT

public:
  // Activation caches kept across the history, least recently used evicted first. An evicted node is
  // still editable: the session rebuilds its cache first, which costs a generation. On the CPU the
  // cache lives in host memory: kCacheBudgetBytes. On a GPU, what the model and a generation's working
  // memory leave of kDeviceCacheShare of the card stays in device memory (edits of it are fastest) and
  // the rest goes to pinned host memory (copied back a step ahead of its use), up to
  // kGpuCacheBudgetBytes or 40% of the machine's memory, whichever is less; an SD2 768x768 generation
  // keeps about 17 GiB.
  static constexpr std::size_t kCacheBudgetBytes = std::size_t{3} << 30;
  static constexpr double kDeviceCacheShare = 0.7;
  static constexpr std::size_t kWorkingBytes = std::size_t{4} << 30;  // peak of a step or decode, above the weights
  static constexpr std::size_t kGpuCacheBudgetBytes = std::size_t{40} << 30;
  // Previews come every second step, and no more often than this: each is a queued image, and a
  // fast GPU would otherwise send more than the window can usefully show.
  static constexpr qint64 kPreviewIntervalMs = 200;

  explicit ModelWorker(QObject* parent = nullptr);
  ~ModelWorker() override;

public slots:
  // configDir: LoadOptions::config_dir for a single-file checkpoint; empty for none. A new model
  // starts a new history.
  void loadModel(const QString& path, const QString& configDir);
  // Takes effect at once when a model is loaded (the history is dropped: its caches live on the old
  // device), else with the next load. A device that cannot be used leaves the current one in place.
  void setDevice(fisedit::DeviceChoice choice);
  // `stop` belongs to a std::stop_source the window holds: a queued cancel call would wait behind the
  // running job, a stop request reaches it between steps.
  void generate(const fisedit::GenerationRequest& request, std::stop_token stop);
  void edit(quint64 baseNode, const fisedit::EditRequest& request, std::stop_token stop);
  // A provisional edit for Live editing (issue 14): made like edit(), but answered with liveEdited or
  // liveEditEnded carrying the window's `ticket`, so its answers are never taken for a normal job's.
  // The node stays in the session, marked provisional, until keepLiveNode() (it joined the history)
  // or dropLiveNode() (replaced or dropped) says what becomes of it.
  void liveEdit(quint64 baseNode, const fisedit::EditRequest& request, std::stop_token stop, quint64 ticket);
  void keepLiveNode(quint64 node);
  // Removes a provisional node; does nothing to a node that is not one (kept, or from an older session).
  void dropLiveNode(quint64 node);
  void removeNode(quint64 node);
  // Removes every node: the history the window showed has been replaced.
  void clearHistory();
  // Enters nodes read from a project (parents before children, ids the window's) into the session
  // without caches: editing one rebuilds its cache by replay. The caller has checked that the model
  // is the one they were made with. A node the session refuses stays out, and so does its subtree.
  void adoptHistory(const QList<fisedit::ui::HistoryRecord>& records, quint64 token);

signals:
  void modelLoaded(const fisedit::ui::ModelSummary& summary);
  // The previous model, if any, is still loaded.
  void loadFailed(const QString& path, const QString& message);
  // The backend in use ("CPU (float32, 2 threads)"); the history is empty after this.
  void engineReady(const QString& deviceName);
  void progress(int step, int total, double elapsedMs);
  // The latents of a job under way as a picture of the image's size (latentPreview; for an edit, the
  // image edited with only the region being re-rendered from the latents: editPreview).
  void preview(const QImage& image);
  // After every job: device memory held by live buffers (-1 where the backend does not say, as on
  // the CPU) and the history's activation caches.
  // deviceBytes < 0: the backend has no device memory of its own (CPU). The cache's bytes in device
  // and in host memory.
  void memoryUsage(qint64 deviceBytes, qint64 cacheDeviceBytes, qint64 cacheHostBytes);
  void generated(const fisedit::ui::HistoryRecord& record);
  void edited(const fisedit::ui::HistoryRecord& record);
  // For adoptHistory(): window id -> session id of every adopted node, and why the others were
  // not adopted (empty when all were); `token` is the caller's, to match the answer to its request.
  void historyAdopted(const QHash<quint64, quint64>& ids, const QString& problems, quint64 token);
  void failed(const QString& message);
  void cancelled();
  // The answers to liveEdit(): its provisional node, or why there is none (cancelled, or a failure's message).
  void liveEdited(const fisedit::ui::HistoryRecord& record, quint64 ticket);
  void liveEditEnded(quint64 ticket, bool cancelled, const QString& message);

private:
  // Builds the backend (if the device changed or there is none), the pipeline and an empty session.
  void startEngine();
  // Runs a job, turning engine errors into failed() and cancellation into cancelled().
  template <typename Job>
  void runJob(Job&& job);
  HistoryRecord record(quint64 id, double totalMs) const;
  // Emits progress() for every step and preview() when one is due. For an edit, `base` is the image
  // edited and `editSteps` its own steps: its previews are `base` with only the region being
  // re-rendered changing (editPreview), and a cache rebuild before it (the first of more steps than
  // `editSteps`) shows none, the base image staying on the canvas.
  ProgressCallback progressReporter(const QImage& base = {}, int editSteps = 0);
  void reportMemory();
  // The first generation of an engine is followed by StableDiffusion::prepare_editing on GPUs.
  void prepareEditing(quint64 id, std::stop_token stop);

  DeviceChoice m_device = DeviceChoice::automatic;
  ModelIdentity m_identity;  // of m_model, for the records
  // Replaced only after a load succeeds, so a failed load leaves the previous model usable. Declared
  // in dependency order: the session refers to the pipeline, the pipeline to the backend and model.
  std::shared_ptr<const LoadedModel> m_model;
  std::unique_ptr<Backend> m_backend;
  std::unique_ptr<StableDiffusion> m_pipeline;
  std::unique_ptr<EditSession> m_session;
  QSet<quint64> m_liveNodes;
  bool m_editingPrepared = false;  // prepareEditing() ran for this engine  // provisional nodes of liveEdit() in m_session, neither kept nor dropped yet
};

}  // namespace fisedit::ui

Q_DECLARE_METATYPE(fisedit::DeviceChoice)
