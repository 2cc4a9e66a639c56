#pragma once
// An edit's sparse steps replayed as one recording (Backend::record, a CUDA graph): every sparse step
// of an edit runs the same layers at the same active positions, so the ~500 launches of one step are
// recorded once and replayed for the others, the host no longer enqueueing each (docs/design-notes.md,
// "Sparse steps as one recorded launch").
//
// A recording reads and writes fixed memory. Before each replay: the step's cached record (what the
// edit reads of it: whole entries, or the rows near the active ones of outputs only read there) is
// copied into the recording's own record, and the step's input and its time
// embeddings (UNet::time_projections, memoised by timestep) into its input tensors (one batched copy). After it: what the step computed is copied out
// of the recording's memory into the step's own record, and what it took unchanged from the cache is
// the base's entries, as SparseStep keeps them. The first sparse step of an edit is recorded: the
// levels' positions and the cross-attentions' keys and values of the context are made before (uploads
// and memos, not recordable), GEMM plans while recording (host work). When the backend refuses that
// recording (something only an op-by-op step makes, e.g. a convolution engine cuDNN times), the step
// runs op by op and the next step is recorded.
#include "backend/backend.h"
#include "core/tensor.h"
#include "edit/sparse_step.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fisedit {

class UNet;

class SparseStepReplay {
public:
  // `unet`, `levels` and `context` ([B, L, C], the edit's conditioning) must outlive this object.
  SparseStepReplay(Backend& b, UNet& unet, SparseLevels& levels, DeviceTensor context);
  ~SparseStepReplay();

  // Step i of the edit: `cached` is the base's record of the step as the edit reads it (on the device
  // or staged, CachePrefetch::acquire), `keep` the base's record itself (what `out` keeps unchanged);
  // `input` the U-Net's input [B, C, h, w] (CFG batch), `timestep` the model's timestep. Returns the
  // U-Net's output [B, C, h, w], with `out` the step's record, as SparseStep and UNet::forward make
  // them; nothing when the backend cannot record this step (why_not() says why): run the step without.
  std::optional<Tensor> run(const LayerRecord& cached, const LayerRecord& keep, const Tensor& input, float timestep,
                            LayerRecord& out);
  // The same with the input on the device (activation dtype, NCHW), without waiting: the output is
  // the recording's own memory, valid until the next replay is queued.
  std::optional<DeviceTensor> queue(const LayerRecord& cached, const LayerRecord& keep, const DeviceTensor& input,
                                    float timestep, LayerRecord& out);
  // Whether no step will be replayed any more (a second refusal to record, or a record that does not
  // fit the recording); after a first refusal failed() stays false and the next step is recorded.
  bool failed() const { return failed_; }
  const std::string& why_not() const { return why_; }
  int replays() const { return replays_; }
  // Host time in run() and queue(): queueing the copies and the replay (the recording's own making
  // included), and waiting for the result (run() only).
  struct Times {
    double enqueue_ms = 0, wait_ms = 0;
    double record_ms = 0;  // of enqueue_ms: recording the step (capture and instantiation)
    // Device-to-device copies queued around the replays: the cached entries the step reads copied in,
    // and what it made copied out into the step's new record (summed over the replays).
    std::size_t copied_in_bytes = 0, copied_out_bytes = 0;
  };
  const Times& times() const { return times_; }

private:
  bool record(const LayerRecord& cached, const LayerRecord& keep, const Shape& input);
  // The copies of what a step reads of `cached` into the recording's memory, appended to `in` (whole
  // entries) and `rows` (the rows read of outputs read near the active ones); false (nothing appended)
  // when one of them is in host memory.
  bool record_copies(const LayerRecord& cached, const LayerRecord& keep, std::vector<Backend::TensorCopy>& in,
                     std::vector<Backend::RowsAt>& rows) const;
  // Whether a replay keeps output k as the rows it computed over `keep`'s entry (RowDelta).
  bool kept_as_rows(std::size_t k, const LayerRecord& keep) const;

  Backend& b_;
  UNet& unet_;
  SparseLevels& levels_;
  DeviceTensor context_;
  std::unique_ptr<Backend::Recording> recording_;
  bool failed_ = false;
  int refusals_ = 0;  // recordings the backend refused
  std::string why_;
  int replays_ = 0;
  Times times_;

  // The recording's inputs: the cached record's read entries in memory of its own (the rest are the
  // first recorded step's entries, never read), the input and the time projections; and its result.
  LayerRecord fixed_;
  std::vector<std::uint32_t> fixed_outputs_;  // OutputKey indices copied in before each replay
  DeviceTensor sample_, projections_, result_;
  // What the recorded step keeps: recording memory (copied out after each replay) or, where taken
  // unchanged from the cache, the base's entry of the recorded step (the replayed step's instead).
  LayerRecord made_;
  std::vector<bool> output_taken_, norm_taken_;
  // By OutputKey: the positions of the outputs the recorded step scattered in place (empty for the
  // others): what each replay keeps as rows (LayerRecord::deltas).
  std::vector<DeviceTensor> scattered_;
  // By OutputKey: where the recorded step reads an output scattered in place, when only near its
  // active rows (SparseStep::read_near_positions), else empty.
  std::vector<DeviceTensor> read_near_;
};

}  // namespace fisedit
