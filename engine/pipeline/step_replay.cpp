// An edit's sparse steps replayed as one recording: see step_replay.h.
#include "pipeline/step_replay.h"

#include "edit/cache_store.h"
#include "core/env.h"
#include "models/unet.h"
#include "pipeline/step_clock.h"

#include <chrono>
#include <string>

namespace fisedit {
namespace {

bool same_memory(const DeviceTensor& a, const DeviceTensor& b) {
  return !a.empty() && a.buffer() == b.buffer() && a.offset() == b.offset();
}

// FISEDIT_REPLAY_IN_PLACE=0 (read once): scatter into new memory as an op-by-op step does (the
// benchmark's comparison); otherwise into the recording's copy of the cached record.
bool in_place() {
  static const bool on = env_flag("FISEDIT_REPLAY_IN_PLACE", true);
  return on;
}

// FISEDIT_REPLAY_ROW_DELTAS=0 (read once): each replayed step copies out whole entries of what it
// scattered, as before row deltas (the benchmark's comparison); otherwise only the rows it computed.
bool row_deltas() {
  static const bool on = env_flag("FISEDIT_REPLAY_ROW_DELTAS", true);
  return on;
}

// FISEDIT_REPLAY_NEAR_ROWS=0 (read once): copy in whole every cached entry a step reads (the
// benchmark's comparison); otherwise only the rows read of outputs read near the active ones.
bool near_rows() {
  static const bool on = env_flag("FISEDIT_REPLAY_NEAR_ROWS", true);
  return on;
}

}  // namespace

SparseStepReplay::SparseStepReplay(Backend& b, UNet& unet, SparseLevels& levels, DeviceTensor context)
    : b_(b), unet_(unet), levels_(levels), context_(std::move(context)) {}

SparseStepReplay::~SparseStepReplay() = default;

bool SparseStepReplay::record(const LayerRecord& cached, const LayerRecord& keep, const Shape& input) {
  if (!b_.can_record()) {
    why_ = b_.name() + " cannot record work";
    return false;
  }
  // The recording's own memory for what a step reads of its cached record; entries the edit does not
  // read (levels the mask covers, host-resident ones) stay the recorded step's, never read.
  fixed_ = cached;
  fixed_.cross_attention.clear();
  fixed_outputs_.clear();
  for (std::uint32_t k = 0; k < fixed_.outputs.size(); ++k) {
    auto& t = fixed_.outputs[k];
    if (t.empty() || t.host_resident() || !read_by_edit(t, levels_.latent())) continue;
    t = b_.allocate(t.dtype(), t.shape());
    b_.poison(t);  // rows no replay copies in (read_near_) must be rows nothing reads: NaN shows a mistake
    fixed_outputs_.push_back(k);
  }
  for (auto& s : fixed_.norm_stats) {
    if (s.mean.empty() || s.mean.host_resident() || s.var.host_resident()) {
      why_ = "the cached record holds GroupNorm statistics in host memory";
      return false;
    }
    s.mean = b_.allocate(s.mean.dtype(), s.mean.shape());
    s.var = b_.allocate(s.var.dtype(), s.var.shape());
  }
  sample_ = b_.allocate(b_.activation_dtype(), input);
  projections_ = b_.allocate(b_.activation_dtype(), unet_.time_projections_shape(input[0]));
  levels_.make_ready(b_);  // the near positions the in-place scatters ask for: uploads, not recordable
  unet_.prepare_context(context_);  // the cross-attentions' keys and values of the context, made once

  const auto t0 = pipeline_detail::Clock::now();
  recording_ = b_.record(
      [&] {
        SparseStep step(fixed_, levels_, made_, false, &keep);
        if (in_place()) step.scatter_in_place();  // fixed_ is the recording's own: no third pass over it
        const auto sample = b_.nchw_to_nhwc(sample_);
        result_ = b_.nhwc_to_nchw(unet_.forward_projected(sample, projections_, context_, &step));
        scattered_ = step.scattered_positions();
        read_near_ = step.read_near_positions();
      },
      &why_);
  times_.record_ms += pipeline_detail::ms_since(t0);
  if (!recording_) {
    fixed_ = {};
    made_ = {};
    sample_ = projections_ = result_ = {};
    return false;
  }
  output_taken_.assign(made_.outputs.size(), false);
  norm_taken_.assign(made_.norm_stats.size(), false);
  for (std::size_t k = 0; k < made_.outputs.size(); ++k) output_taken_[k] = same_memory(made_.outputs[k], keep.outputs[k]);
  for (std::size_t k = 0; k < made_.norm_stats.size(); ++k)
    norm_taken_[k] = same_memory(made_.norm_stats[k].mean, keep.norm_stats[k].mean);
  return true;
}

bool SparseStepReplay::kept_as_rows(std::size_t k, const LayerRecord& keep) const {
  return row_deltas() && k < scattered_.size() && !scattered_[k].empty() && !keep.outputs[k].empty() &&
         !keep.outputs[k].host_resident();
}

bool SparseStepReplay::record_copies(const LayerRecord& cached, const LayerRecord& keep,
                                     std::vector<Backend::TensorCopy>& in, std::vector<Backend::RowsAt>& rows) const {
  if (cached.outputs.size() != fixed_.outputs.size() || cached.norm_stats.size() != fixed_.norm_stats.size()) return false;
  for (const auto k : fixed_outputs_)
    if (cached.outputs[k].host_resident()) return false;
  in.reserve(in.size() + fixed_outputs_.size() + 2 * fixed_.norm_stats.size() + 2);
  for (const auto k : fixed_outputs_) {
    // An output the step scatters in place and reads near its active rows only, and keeps as those
    // rows: only the cached rows it reads come in. What the other rows hold (an earlier step's values,
    // or nothing yet) is read by nothing and kept by nothing.
    if (near_rows() && k < read_near_.size() && !read_near_[k].empty() && kept_as_rows(k, keep)) {
      const auto& t = fixed_.outputs[k];
      const auto n = t.dim(0), c = t.dim(-1);
      const Shape rows_shape{n, t.numel() / (n * c), c};
      rows.push_back({cached.outputs[k].reshaped(rows_shape), read_near_[k], t.reshaped(rows_shape)});
      continue;
    }
    in.push_back({cached.outputs[k], fixed_.outputs[k]});
  }
  for (std::size_t k = 0; k < fixed_.norm_stats.size(); ++k) {
    in.push_back({cached.norm_stats[k].mean, fixed_.norm_stats[k].mean});
    in.push_back({cached.norm_stats[k].var, fixed_.norm_stats[k].var});
  }
  return true;
}

std::optional<Tensor> SparseStepReplay::run(const LayerRecord& cached, const LayerRecord& keep, const Tensor& input,
                                            float timestep, LayerRecord& out) {
  const auto result = queue(cached, keep, b_.upload(input), timestep, out);
  if (!result) return std::nullopt;
  const auto t1 = pipeline_detail::Clock::now();
  auto values = b_.download(*result);
  times_.wait_ms += pipeline_detail::ms_since(t1);
  return values;
}

std::optional<DeviceTensor> SparseStepReplay::queue(const LayerRecord& cached, const LayerRecord& keep,
                                                    const DeviceTensor& input, float timestep, LayerRecord& out) {
  if (failed_) return std::nullopt;
  const auto t0 = pipeline_detail::Clock::now();
  if (cached.has_deltas() || keep.has_deltas()) {  // before recording: fixed_ copies whole entries
    failed_ = true;
    why_ = "a step's cached record holds row deltas (merge them first: materialize)";
    return std::nullopt;
  }
  if (!recording_ && !record(cached, keep, input.shape())) {
    // The first attempt may meet what only an op-by-op step makes (e.g. a convolution engine cuDNN
    // must time): that step runs op by op, and the next one is recorded; a second refusal is final.
    if (++refusals_ > 1) failed_ = true;
    times_.enqueue_ms += pipeline_detail::ms_since(t0);
    return std::nullopt;
  }
  if (cached.outputs.size() != fixed_.outputs.size() || cached.norm_stats.size() != fixed_.norm_stats.size() ||
      keep.outputs.size() != made_.outputs.size() || keep.norm_stats.size() != made_.norm_stats.size() ||
      input.shape() != sample_.shape() || input.dtype() != sample_.dtype()) {
    failed_ = true;
    why_ = "a step's record or input differs in shape from the recorded step's";
    return std::nullopt;
  }
  // In: the step's cached entries, its input and its timestep.
  std::vector<Backend::TensorCopy> in;
  std::vector<Backend::RowsAt> near;
  if (!record_copies(cached, keep, in, near)) {
    failed_ = true;
    why_ = "a step's cached record holds an entry the edit reads in host memory";
    return std::nullopt;
  }
  in.push_back({input, sample_});
  // The time embeddings ready-made (memoised by the generation's steps of the same timesteps): no
  // time-embedding GEMMs in the recorded step.
  in.push_back({unet_.time_projections(std::span(&timestep, 1), input.dim(0)), projections_});
  for (std::size_t k = 0; k + 2 < in.size(); ++k) times_.copied_in_bytes += in[k].src.nbytes();  // not input, time
  for (const auto& r : near)
    times_.copied_in_bytes += static_cast<std::size_t>(r.src.dim(0) * r.positions.dim(0) * r.src.dim(2)) * dtype_size(r.src.dtype());
  b_.copy_into(in);
  b_.copy_rows_into(near);
  b_.mark("copy in");
  recording_->replay();
  b_.mark("replay");
  ++replays_;

  // Out: what the step computed, copied out of the recording's memory; the rest is the base's.
  out = {};
  out.outputs.resize(made_.outputs.size());
  out.norm_stats.resize(made_.norm_stats.size());
  std::vector<Backend::TensorCopy> kept;
  const auto copy_out = [&](const DeviceTensor& made) {
    auto t = b_.allocate(made.dtype(), made.shape());
    kept.push_back({made, t});
    return t;
  };
  // An output scattered in place differs from the step's base entry only at its level's positions:
  // kept as those rows over the base's entry (RowDelta), where that entry is on the device.
  std::vector<Backend::RowsAt> rows;
  for (std::size_t k = 0; k < made_.outputs.size(); ++k) {
    if (output_taken_[k]) {
      out.outputs[k] = keep.outputs[k];
      continue;
    }
    const DeviceTensor& made = made_.outputs[k];
    if (kept_as_rows(k, keep)) {
      const auto n = made.dim(0), c = made.dim(-1), p = scattered_[k].dim(0);
      if (out.deltas.empty()) out.deltas.resize(made_.outputs.size());
      out.outputs[k] = keep.outputs[k];
      out.deltas[k] = {b_.allocate(made.dtype(), {n, p, c}), scattered_[k]};
      rows.push_back({made.reshaped({n, made.numel() / (n * c), c}), scattered_[k], out.deltas[k].rows});
      times_.copied_out_bytes += out.deltas[k].rows.nbytes();
      continue;
    }
    out.outputs[k] = copy_out(made);
  }
  for (std::size_t k = 0; k < made_.norm_stats.size(); ++k)
    out.norm_stats[k] = norm_taken_[k] ? keep.norm_stats[k]
                                       : GroupNormStats{copy_out(made_.norm_stats[k].mean), copy_out(made_.norm_stats[k].var)};
  for (const auto& copy : kept) times_.copied_out_bytes += copy.src.nbytes();
  b_.copy_into(kept);
  b_.gather_rows_into(rows);
  b_.mark("copy out");
  times_.enqueue_ms += pipeline_detail::ms_since(t0);
  return result_;
}

}  // namespace fisedit
