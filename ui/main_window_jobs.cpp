// The window's half of a generation or edit: building the request, following its progress, showing
// the result in the canvas and the history, cancelling, and exporting what it made.
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/mask_toolbar.h"
#include "ui/model_worker.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include "core/error.h"
#include "io/image_file.h"

#include <QAction>
#include <QCheckBox>
#include <QDir>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QRandomGenerator>
#include <QStatusBar>
#include <QTabWidget>

#include <algorithm>
#include <cmath>

namespace fisedit::ui {
namespace {

const QString kEditText = QObject::tr("Edit (re-renders only the changed region)");
const QString kPaintedEditText = QObject::tr("Edit (re-renders only the painted region)");


// Binary units, as nvidia-smi and the OS's memory tools count.
QString formatBytes(qint64 bytes) {
  constexpr double kMiB = 1 << 20, kGiB = 1 << 30;
  if (bytes >= kGiB) return QObject::tr("%1 GiB").arg(bytes / kGiB, 0, 'f', 1);
  if (bytes >= kMiB) return QObject::tr("%1 MiB").arg(std::llround(bytes / kMiB));
  return QObject::tr("%1 KiB").arg((bytes + 1023) / 1024);
}

}  // namespace

bool MainWindow::willEdit() const {
  const auto current = m_history->currentNode();
  if (!current) return false;
  const HistoryRecord* base = m_history->record(*current);
  if (base->restored) return false;  // not in the worker's session: there is no cache to edit
  // "Random" means a new seed for each new image; an edit keeps its image's seed by definition.
  const auto seed = m_parameters->randomSeed() ? base->request.seed : m_parameters->seed();
  GenerationRequest next = m_parameters->request(seed);
  next.prompt = m_promptEditor->prompt().toStdString();
  next.negative_prompt = m_promptEditor->negativePrompt().toStdString();
  return is_prompt_edit(base->request, next);
}

void MainWindow::updateGenerateButton() {
  const bool edit = willEdit();
  const bool painted = paintedMaskForEdit().has_value();
  // "Edit all N in batch" is offered while the selected image belongs to a batch of which the worker
  // holds more than one image, and only the prompts differ from it.
  const int batchImages = m_history->currentNode() ? static_cast<int>(editableBatchMembers(*m_history->currentNode()).size()) : 0;
  if (m_editBatchCheck) {
    m_editBatchCheck->setVisible(edit && batchImages > 1);
    m_editBatchCheck->setText(tr("Edit all %1 in batch").arg(batchImages));
  }
  const bool editAll = edit && batchImages > 1 && m_editBatchCheck && m_editBatchCheck->isChecked();
  const int count = m_parameters->batchCount();
  m_generateButton->setText(editAll ? tr("Edit all %1 (re-renders only the changed regions)").arg(batchImages)
                            : edit  ? (painted ? kPaintedEditText : kEditText)
                            : count > 1 ? tr("Generate %1 images").arg(count)
                                        : tr("Generate"));
  m_generateButton->setToolTip(edit ? tr("Only the prompt differs from the selected image: the parts of the image "
                                         "the change does not touch stay exactly as they are (Ctrl+Enter)")
                                    : tr("A new image from the prompt and parameters (Ctrl+Enter)"));
  m_generateButton->setEnabled(m_model.has_value() && !m_busy);
  {  // Live editing needs an image the worker can edit.
    const HistoryRecord* base = m_history->currentNode() ? m_history->record(*m_history->currentNode()) : nullptr;
    if (m_liveAction) m_liveAction->setEnabled(m_model.has_value() && base && !base->restored);
    if (edit && !editAll && liveEditing()) {  // the button keeps the live edit, as Enter does
      m_generateButton->setText(tr("Keep Live Edit"));
      m_generateButton->setToolTip(tr("Live: the edit of the prompt as it is becomes a node of the history (Enter in "
                                      "the prompt box, Ctrl+Enter); Esc drops the preview"));
    }
  }
  m_exportAction->setEnabled(m_history->currentNode().has_value());
  for (QAction* copy : {m_copyImageAction, m_canvasCopyAction, m_copyParametersAction})
    if (copy) copy->setEnabled(m_history->currentNode().has_value());
  // A view-only image cannot be edited, so a mask painted on it would steer nothing.
  const HistoryRecord* shown = m_history->currentNode() ? m_history->record(*m_history->currentNode()) : nullptr;
  m_maskTools->setPaintable(!shown || !shown->restored, shown && shown->restored ? viewOnlyNote(*shown) : QString());
  if (!m_history->currentNode()) {  // nothing shown: no region to show
    m_overlayAction->setChecked(false);
    m_overlayAction->setEnabled(false);
    updateCompareAction(false);
  }
  updateUndoAction();
  updateWindowTitle();
  updateViewOnlyBar();
}

void MainWindow::submit() {
  if (!m_model || m_busy) return;
  // With Live on, an edit is the live one, kept (its result reused when it is there already).
  if (liveEditing() && willEdit() && !editsWholeBatch()) {  // "Edit all in batch" is no live edit
    commitLiveEdit();
    return;
  }
  if (liveActive()) dropLive(false);  // a new image: the live preview goes
  m_jobStop = std::stop_source();
  const std::stop_token stop = m_jobStop.get_token();
  const QString prompt = m_promptEditor->prompt(), negative = m_promptEditor->negativePrompt();

  // One job, or a batch of them run one after another (runNextJob): a batch count above 1 makes that
  // many generations, seeds seed, seed+1, ...; "Edit all in batch" the same edit of every image of the
  // current node's batch.
  QList<PendingJob> jobs;
  if (willEdit()) {
    EditRequest request = m_parameters->editOptions();
    request.prompt = prompt.toStdString();
    request.negative_prompt = negative.toStdString();
    request.painted_mask = paintedMaskForEdit();
    boundPaintedGrowth(request);
    QList<quint64> bases{*m_history->currentNode()};
    if (editsWholeBatch()) bases = editableBatchMembers(*m_history->currentNode());
    for (const quint64 base : std::as_const(bases)) jobs.append({base, {}, request});
  } else {
    const int count = m_parameters->batchCount();
    // A1111's rule: one seed drawn (or the seed box's), +1 for each further image. A drawn seed leaves
    // room for the batch, so every seed fits the seed box.
    const std::uint64_t seed = m_parameters->randomSeed()
                                   ? QRandomGenerator::global()->bounded(2147483647u - static_cast<quint32>(count - 1))
                                   : m_parameters->seed();
    for (int i = 0; i < count; ++i) {
      GenerationRequest request = m_parameters->request(seed + static_cast<std::uint64_t>(i));
      request.prompt = prompt.toStdString();
      request.negative_prompt = negative.toStdString();
      jobs.append({std::nullopt, request, {}});
    }
  }
  m_pendingJobs = jobs;
  m_jobNumber = 0;
  m_batchMade.clear();
  m_batchTag = {};
  if (jobs.size() > 1) {
    // A tag of its own rather than a node id: renumbering nodes (a new engine, an adoption) keeps it.
    // 53 bits, so a project's JSON reads exactly in any language.
    quint64 id = 0;
    while (id == 0) id = QRandomGenerator::global()->generate64() >> 11;
    m_batchTag = {id, 0, static_cast<int>(jobs.size())};
  }
  m_batchShown = m_history->currentNode();
  m_batchFollows = true;
  m_batchClock.start();
  startJob();
  if (!runNextJob(stop)) finishBatch(true);  // cannot happen: the current node is always there
}

bool MainWindow::runNextJob(std::stop_token stop) {
  // A batch edit's image deleted from the history meanwhile is left out: its edit would have no row.
  while (!m_pendingJobs.isEmpty() && m_pendingJobs.first().editBase && !m_history->record(*m_pendingJobs.first().editBase)) {
    m_pendingJobs.removeFirst();
    ++m_jobNumber;
  }
  if (m_pendingJobs.isEmpty()) return false;
  const PendingJob job = m_pendingJobs.takeFirst();
  ++m_jobNumber;
  m_rebuildEndMs = 0;
  m_jobProgress->setRange(0, 0);  // until the job's first step reports how many there are
  if (m_batchTag.id != 0) setJobProgressText(tr("image %1 of %2, starting...").arg(m_jobNumber).arg(m_batchTag.size));
  if (job.editBase) {
    const quint64 base = *job.editBase;
    const EditRequest request = job.edit;
    m_jobEditSteps = m_history->record(base)->request.steps - start_step(m_history->record(base)->request);  // image to image: the steps run
    QMetaObject::invokeMethod(
        m_worker, [worker = m_worker, base, request, stop] { worker->edit(base, request, stop); }, Qt::QueuedConnection);
  } else {
    m_jobEditSteps = 0;
    const GenerationRequest request = job.generation;
    QMetaObject::invokeMethod(
        m_worker, [worker = m_worker, request, stop] { worker->generate(request, stop); }, Qt::QueuedConnection);
  }
  return true;
}

QList<quint64> MainWindow::editableBatchMembers(quint64 id) const {
  QList<quint64> ids;
  // Only the images the worker's session holds: a view-only one has no cache to edit.
  for (const HistoryRecord& r : m_history->batchMembers(id))
    if (!r.restored) ids << r.id;
  return ids;
}

bool MainWindow::editsWholeBatch() const {
  return m_editBatchCheck && m_editBatchCheck->isChecked() && m_history->currentNode() &&
         editableBatchMembers(*m_history->currentNode()).size() > 1 && willEdit();
}

void MainWindow::boundPaintedGrowth(EditRequest& request) {
  if (!request.painted_mask || request.mask_mode == MaskMode::automatic) return;
  // The composite's blend reaches 2 * feather pixels beyond the recomputed cells. A painted region
  // may grow by its latent cells plus the margin the user set, and no more: the blend is taken out
  // of the margin (or, for a margin too narrow to hold it, narrowed to fit).
  const int blendCells = (2 * request.feather + 7) / 8;
  if (request.mask_mode == MaskMode::painted && request.margin >= blendCells) {
    request.margin -= blendCells;
  } else if (request.mask_mode == MaskMode::painted) {
    request.feather = request.margin * 4;
    request.margin = 0;
  } else {  // intersect: the region lies inside the painted cells; only the blend goes beyond them
    request.feather = std::min(request.feather, request.margin * 4);
  }
}

void MainWindow::cancel() {
  if (!m_busy && liveActive()) {  // Esc drops the live preview: the committed image again, the text kept
    dropLive(true);
    statusBar()->showMessage(tr("Live preview dropped: Enter edits the prompt as it is"), 5000);
    return;
  }
  if (!m_busy) return;
  m_jobStop.request_stop();  // directly: a queued call would wait behind the job it is meant to stop
  setJobProgressText(tr("Cancelling..."));
}

void MainWindow::startJob() {
  m_busy = true;
  m_errorBanner->hide();
  m_jobProgress->setRange(0, 0);  // until the first step reports how many there are
  setJobProgressText(tr("Starting..."));
  m_jobProgress->show();
  m_jobProgressText->show();
  m_cancelButton->show();
  updateGenerateButton();
}

void MainWindow::endJob() {
  m_busy = false;
  m_canvas->clearPreview();  // the finished image, or the one from before a cancel, takes its place
  m_jobProgress->hide();
  m_jobProgressText->hide();
  m_cancelButton->hide();
  updateGenerateButton();
}

void MainWindow::onProgress(int step, int total, double elapsedMs) {
  if (!m_busy || m_jobStop.stop_requested()) return;
  // An edit of a node whose cache was dropped (or never built: a reopened project) first rebuilds it:
  // the session reports those runs and the edit as one count. They are shown apart, and the edit's
  // own steps and time left start after the rebuild.
  const int rebuild = m_jobEditSteps > 0 && total > m_jobEditSteps ? total - m_jobEditSteps : 0;
  const auto secondsLeft = [](double ms, int done, int all) {
    const double left = done > 0 ? ms / done * (all - done) / 1000.0 : 0;
    return QString::number(left, 'f', left < 10 ? 1 : 0);
  };
  // In a batch, which image this is: "image 2 of 4, step 7/20".
  const QString image = m_batchTag.id != 0 ? tr("image %1 of %2, ").arg(m_jobNumber).arg(m_batchTag.size) : QString();
  const auto reported = [&] {  // once the bar and its text say it
    emit jobProgress(m_batchTag.id != 0 ? m_jobNumber : 1, m_batchTag.id != 0 ? m_batchTag.size : 1, step, total);
  };
  if (rebuild > 0 && step <= rebuild) {
    m_jobProgress->setRange(0, rebuild);
    m_jobProgress->setValue(step);
    setJobProgressText(image + tr("Rebuilding the cache of the image (step %1/%2 · %3 s left), then the edit")
                           .arg(step)
                           .arg(rebuild)
                           .arg(secondsLeft(elapsedMs, step, rebuild)));
    if (step == rebuild) m_rebuildEndMs = elapsedMs;
    reported();
    return;
  }
  const int own = step - rebuild, ownTotal = total - rebuild;
  m_jobProgress->setRange(0, ownTotal);
  m_jobProgress->setValue(own);
  // The steps of one job cost about the same, so the mean so far predicts the rest.
  setJobProgressText(image + tr("step %1/%2 · %3 s left").arg(own).arg(ownTotal).arg(secondsLeft(elapsedMs - m_rebuildEndMs, own, ownTotal)));
  reported();
}

void MainWindow::setJobProgressText(const QString& text) {
  m_jobProgress->setFormat(text);
  m_jobProgressText->setText(text);
}

void MainWindow::onPreview(const QImage& image) {
  // A preview queued before a cancel or the job's end must not cover what is shown after it.
  if (!m_busy || m_jobStop.stop_requested()) return;
  // A batch's next image is not drawn over a node the user chose meanwhile.
  if (m_batchTag.id != 0 && m_history->currentNode() != m_batchShown) return;
  m_canvas->showPreview(image);
}

void MainWindow::onMemoryUsage(qint64 deviceBytes, qint64 cacheDeviceBytes, qint64 cacheHostBytes) {
  if (deviceBytes < 0) {  // CPU: the cache is in host memory, there is no device memory to tell apart
    m_memoryLabel->setText(tr("cache %1").arg(formatBytes(cacheDeviceBytes + cacheHostBytes)));
  } else {
    const QString cache = cacheHostBytes > 0 ? tr("cache %1 (GPU %2 + host %3)")
                                                   .arg(formatBytes(cacheDeviceBytes + cacheHostBytes),
                                                        formatBytes(cacheDeviceBytes), formatBytes(cacheHostBytes))
                                             : tr("cache %1").arg(formatBytes(cacheDeviceBytes));
    m_memoryLabel->setText(tr("GPU memory %1 · %2").arg(formatBytes(deviceBytes), cache));
  }
  m_memoryLabel->setToolTip(tr("Device memory held by the engine, and the activation caches that make edits fast "
                               "(beyond the GPU's share, kept in host memory and copied back as an edit needs it)"));
}

void MainWindow::onNodeReady(const HistoryRecord& made) {
  HistoryRecord record = made;
  const bool batch = m_batchTag.id != 0;
  if (batch) {
    record.batch = m_batchTag;
    record.batch.index = m_jobNumber;
    // The canvas follows the newest image until the user picks another node; then it stays theirs.
    if (m_history->currentNode() != m_batchShown) m_batchFollows = false;
  }
  // Made, whatever happens to the rest of the batch: a cancel after it keeps it.
  m_unsavedChanges = true;
  m_newNodesUnsaved = true;
  if (!batch) endJob();
  m_history->addRecord(record, !batch || m_batchFollows);  // selecting it shows it
  m_sideTabs->setCurrentWidget(m_history);
  if (batch) {
    m_batchMade << record.id;
    if (m_batchFollows) m_batchShown = record.id;
    const bool stopped = m_jobStop.stop_requested() && !m_pendingJobs.isEmpty();
    if (!stopped && runNextJob(m_jobStop.get_token())) return;
    finishBatch(!stopped);
    return;
  }
  QString note = record.isEdit() ? tr("Edited in %1 s, %2 of the image re-rendered")
                                       .arg(record.totalMs / 1000.0, 0, 'f', 1)
                                       .arg(percent(changedFraction(record)))
                                 : tr("Generated in %1 s").arg(record.totalMs / 1000.0, 0, 'f', 1);
  if (record.regeneration.nodes > 0)
    note = tr("Edited in %1 s, %2 of the image re-rendered, after %3 s rebuilding the cache (%n image(s) recomputed)",
              nullptr, record.regeneration.nodes)
               .arg(editMs(record) / 1000.0, 0, 'f', 1)
               .arg(percent(changedFraction(record)))
               .arg(record.regeneration.ms / 1000.0, 0, 'f', 1);
  // Kept until the next message: the user should see it even if they look away while it runs.
  if (record.regeneration.image_differs)
    note += tr(". Note: rebuilding the cache gave an image that differs from the saved one (made on another "
               "device or fisedit version?); the edit keeps the saved image outside its region.");
  statusBar()->showMessage(note, record.regeneration.image_differs ? 0 : 8000);
  emit jobFinished(true);
}

void MainWindow::finishBatch(bool complete) {
  m_pendingJobs.clear();
  endJob();
  // The first image is the one shown at the end, unless the user picked another meanwhile.
  if (m_batchFollows && !m_batchMade.isEmpty()) m_history->selectNode(m_batchMade.first());
  const int made = static_cast<int>(m_batchMade.size());
  const double seconds = static_cast<double>(m_batchClock.elapsed()) / 1000.0;
  statusBar()->showMessage(complete ? tr("Made a batch of %1 images in %2 s").arg(made).arg(seconds, 0, 'f', 1)
                                    : tr("Cancelled: %1 of the batch's %2 images were made").arg(made).arg(m_batchTag.size),
                           8000);
  m_batchTag = {};
  emit jobFinished(complete);
}

void MainWindow::onJobFailed(const QString& message) {
  const bool wasJob = m_busy;
  const int made = static_cast<int>(m_batchMade.size());
  const bool batch = m_batchTag.id != 0 && wasJob;
  m_pendingJobs.clear();
  endJob();
  if (batch && made > 0 && m_batchFollows) m_history->selectNode(m_batchMade.first());
  showError(tr("<b>The engine stopped</b><br>%1").arg(message.toHtmlEscaped()) +
            (batch ? tr("<br>%1 of the batch's %2 images were made; the rest were not started.").arg(made).arg(m_batchTag.size)
                   : QString()));
  m_batchTag = {};
  if (wasJob) emit jobFinished(false);
}

void MainWindow::onJobCancelled() {
  // A batch: the images made stay, the one running is dropped, the rest never start.
  const int made = static_cast<int>(m_batchMade.size());
  const bool batch = m_batchTag.id != 0 && m_busy;
  m_pendingJobs.clear();
  endJob();
  if (batch && made > 0 && m_batchFollows) m_history->selectNode(m_batchMade.first());
  statusBar()->showMessage(batch ? tr("Cancelled: %1 of the batch's %2 images were made").arg(made).arg(m_batchTag.size)
                                 : tr("Cancelled"),
                           5000);
  m_batchTag = {};
  emit jobFinished(false);
}

void MainWindow::onEngineReady(const QString& deviceName) {
  forgetLive();  // the session that held the live edits' nodes is gone
  m_deviceLabel->setText(tr("Device: %1").arg(deviceName));
  // A new engine has a new, empty session: the panel's nodes stay, view only, and those made with
  // this model are adopted by the new session (their caches rebuilt on the first edit).
  keepHistoryForNewEngine();
  adoptRestoredNodes();
  updateGenerateButton();
  emit engineReady(deviceName);
}

void MainWindow::showNode(quint64 id) {
  // Another node selected: the live edits of the one before are dropped (its image is not shown again).
  if (!m_liveCommitting && m_liveBase && *m_liveBase != id) dropLive(false);
  const HistoryRecord* r = m_history->record(id);
  if (!r) return;
  const HistoryRecord* parent = r->parent ? m_history->record(*r->parent) : nullptr;
  const QImage previous = parent ? parent->image : m_shownImage;
  m_canvas->setImage(r->image, r->changedRegion, previous);
  m_shownImage = r->image;
  m_overlayAction->setEnabled(r->isEdit());
  updateCompareAction(parent != nullptr);
  m_canvas->setOverlayLegend(r->isEdit() ? tr("Tinted: re-rendered, %1 of the image (the exported mask's white)\n"
                                              "Dimmed: kept, pixel for pixel the previous image")
                                               .arg(percent(changedFraction(*r)))
                                         : QString());
  // The selected node is the base of the next edit: showing its prompts and parameters makes the
  // button say what a change to them will do.
  m_promptEditor->setPrompts(QString::fromStdString(r->request.prompt), QString::fromStdString(r->request.negative_prompt));
  m_parameters->showRequest(r->request);
  if (r->restored && !madeWithOpenModel(*r)) statusBar()->showMessage(viewOnlyNote(*r));  // why it cannot be edited, and what would help
  updateGenerateButton();
}

void MainWindow::removeNode(quint64 id, const QList<HistoryRecord>& removed) {
  Q_UNUSED(id);
  if (m_liveBase && std::any_of(removed.begin(), removed.end(), [this](const HistoryRecord& r) { return r.id == *m_liveBase; }))
    dropLive(false);
  // The worker keeps the nodes (and whatever caches it holds for them) while an undo can bring them
  // back; the oldest deletion beyond the limit leaves it for good.
  m_deletions.append({removed});
  while (m_deletions.size() > kUndoDeletions) {
    const Deletion oldest = m_deletions.takeFirst();
    if (oldest.records.isEmpty() || oldest.records.first().restored) continue;  // not in the session
    const quint64 gone = oldest.records.first().id;
    QMetaObject::invokeMethod(m_worker, [worker = m_worker, gone] { worker->removeNode(gone); }, Qt::QueuedConnection);
  }
  if (!m_history->currentNode()) {
    m_canvas->clear();
    m_shownImage = QImage();
  }
  const int n = static_cast<int>(removed.size());
  statusBar()->showMessage(n > 1 ? tr("Deleted %n image(s): the selected one and the %1 made from it. Edit > Undo (Ctrl+Z) "
                                      "brings them back.", nullptr, n)
                                       .arg(n - 1)
                                 : tr("Deleted 1 image. Edit > Undo (Ctrl+Z) brings it back."),
                           10000);
  updateUndoAction();
  updateGenerateButton();
}

void MainWindow::undoDeletion() {
  if (m_deletions.isEmpty() || m_busy) return;
  const Deletion last = m_deletions.takeLast();
  // Still in the worker's session when no new engine came since: editable at once, caches and all.
  // Otherwise view only (keepHistoryForNewEngine made them so), until the open model adopts them.
  const bool sameSession =
      std::none_of(last.records.begin(), last.records.end(), [](const HistoryRecord& r) { return r.restored; });
  m_history->restoreSubtree(last.records);
  m_unsavedChanges = true;
  m_sideTabs->setCurrentWidget(m_history);
  statusBar()->showMessage(tr("Restored %n image(s)", nullptr, static_cast<int>(last.records.size())), 5000);
  if (!sameSession) adoptRestoredNodes();
  updateUndoAction();
  updateGenerateButton();
}

void MainWindow::dropDeletions(bool tellWorker) {
  for (const Deletion& d : std::as_const(m_deletions)) {
    if (!tellWorker || d.records.first().restored) continue;
    const quint64 gone = d.records.first().id;
    QMetaObject::invokeMethod(m_worker, [worker = m_worker, gone] { worker->removeNode(gone); }, Qt::QueuedConnection);
  }
  m_deletions.clear();
  updateUndoAction();
}

bool MainWindow::exportImage(const QString& path) {
  const auto id = m_history->currentNode();
  if (!id) return false;
  const HistoryRecord* r = m_history->record(*id);
  try {
    write_png(std::filesystem::path(path.toStdString()), toImage8(r->image), imageTextChunks(*r));
  } catch (const Error& e) {
    showError(tr("<b>Could not export the image</b><br>%1").arg(QString::fromUtf8(e.what()).toHtmlEscaped()));
    return false;
  }
  rememberBrowseDir(BrowseKind::exports, path);
  statusBar()->showMessage(tr("Exported %1").arg(QFileInfo(path).fileName()), 5000);
  return true;
}

void MainWindow::chooseExportFile() {
  const auto id = m_history->currentNode();
  if (!id) return;
  const auto& request = m_history->record(*id)->request;
  const QString suggested = QDir(browseDir(BrowseKind::exports)).filePath(QStringLiteral("fisedit-%1-%2.png").arg(request.seed).arg(*id));
  QString file = QFileDialog::getSaveFileName(this, tr("Export Image"), suggested, tr("PNG images (*.png)"));
  if (file.isEmpty()) return;
  if (!file.endsWith(QLatin1String(".png"), Qt::CaseInsensitive)) file += QLatin1String(".png");
  exportImage(file);
}

}  // namespace fisedit::ui
