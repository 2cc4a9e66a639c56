#pragma once
// How one U-Net call relates to a cached generation (docs/method.md sections 2.2 and 3.5 to 3.10).
//
// Recording (a dense step of a generation): every spatial layer's full output and every GroupNorm's
// statistics are kept in the step's LayerRecord, each under the key its layer was given when the
// U-Net was built (RecordLayout).
// Editing (a step of an edit): each spatial layer's output outside the edit mask is the cached one,
// inside it is computed anew; GroupNorms of partly masked levels take the cached statistics. Every
// layer asks for its own entry by key, so the order layers run in does not matter. The result is
// itself recorded, so the edited generation can be edited again.
//
// Spatial layers are those whose output at a position depends on other positions: 3x3 convolutions
// (resampling ones included) and attention. Token-wise layers need no blending: fed cached values
// they reproduce cached values. Levels are the U-Net's resolutions; a level's mask is the latent mask
// max-pooled the way the down path halves sizes (rounding up), so a position is active when any
// latent pixel under it is.
#include "backend/backend.h"
#include "core/latent_mask.h"

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace fisedit {

// The keys of a step record's entries: a spatial layer's output, a GroupNorm's statistics, a
// cross-attention layer's probabilities. Each is an index into its vector of LayerRecord.
struct OutputKey {
  std::uint32_t index = 0;
};
struct NormKey {
  std::uint32_t index = 0;
};
struct ProbsKey {
  std::uint32_t index = 0;
};

// Which entries a network's step record holds, and whose they are: the U-Net hands out one key per
// recording layer as it builds them (named after the layer's weights, e.g.
// "down_blocks.1.resnets.0.conv1"), and gives the layout to each SparseStep it runs.
class RecordLayout {
public:
  // Where a step of an edit reads a sparse level's output of the cached record, besides the rows it
  // computes itself: `near` its level's active positions only (within two places: the 3x3
  // convolutions of its level, the stride-2 ones of the next, nearest upsampling then 3x3 of the
  // previous); `whole` anywhere (attention's keys and values, the network's output).
  enum class Reads { near, whole };
  OutputKey output(std::string name, Reads reads = Reads::near);
  Reads reads(OutputKey k) const { return reads_.at(k.index); }
  NormKey norm(std::string name);
  ProbsKey cross_attention(std::string name);
  std::size_t outputs() const { return outputs_.size(); }
  std::size_t norms() const { return norms_.size(); }
  std::size_t cross_attentions() const { return probs_.size(); }
  const std::string& name(OutputKey k) const { return outputs_.at(k.index); }
  const std::string& name(NormKey k) const { return norms_.at(k.index); }
  const std::string& name(ProbsKey k) const { return probs_.at(k.index); }

private:
  std::vector<std::string> outputs_, norms_, probs_;
  std::vector<Reads> reads_;
};

// An entry an edit changed at some rows only: the whole entry is the record's output (the base
// generation's entry, shared) with the rows at `positions` replaced by `rows`.
struct RowDelta {
  DeviceTensor rows;       // [N, P, C]
  DeviceTensor positions;  // I32 [P]: the rows of the entry viewed as [N, L, C]
  bool empty() const { return rows.empty(); }
};

struct LayerRecord {
  std::vector<DeviceTensor> outputs;       // spatial layer outputs, by OutputKey
  std::vector<GroupNormStats> norm_stats;  // GroupNorm statistics, by NormKey
  // Cross-attention probabilities of the conditional batch item (the last), [1, heads, Lq, Lk] per
  // cross-attention layer, by ProbsKey: kept only for the steps an edit's attention control reads
  // (SparseStep::explicit_cross_attention), empty otherwise.
  std::vector<DeviceTensor> cross_attention;
  // By OutputKey: the entries an edit's replayed step kept as the rows it computed over its base's
  // entry (pipeline/step_replay.h), instead of a whole copy; empty, or one per output (empty() for a
  // whole entry). Only entries on the device have them (spill_to_host merges them first), and what
  // reads an entry's values takes materialize()'s record (SparseStep refuses one with deltas).
  std::vector<RowDelta> deltas;
  bool has_deltas() const;
  std::size_t bytes() const;  // every tensor's bytes, shared ones included
};

// `record` with each row delta merged into a new whole entry on the device (the other entries shared).
LayerRecord materialize(Backend& b, const LayerRecord& record);

// Whether a step's record of the CFG batch can lend its unconditional item to with_unconditional():
// every output and statistic present, whole (no row deltas), of batch 2 (on the device or spilled).
bool has_unconditional(const LayerRecord& record);
// `conditional`, a step's record of the conditional item alone (batch 1), completed into the record of
// the CFG batch [uncond, cond] with `source`'s unconditional item (a record of the same network, see
// has_unconditional): new device memory, filled by one batched copy (and one from host memory for a
// spilled `source`, which the computation waits for on the device). Cross-attention probabilities are
// the conditional item's already and stay `conditional`'s. Throws Error(invalid_argument) when the
// records do not match entry for entry.
LayerRecord with_unconditional(Backend& b, const LayerRecord& source, const LayerRecord& conditional);

// LatentMask (a latent-resolution mask) is core/latent_mask.h: requests carry it too.

// The mask at a level of size h x w, max-pooled from the latent mask.
std::vector<float> level_mask(const LatentMask& latent, std::int64_t h, std::int64_t w);

// An edit's mask at every level of the U-Net, on the device. Made once per edit and shared by its
// steps: an upload waits for the device, so uploading per step would stall the step loop.
class SparseLevels {
public:
  // Partly covered levels of at most `dense_up_to` positions run in full (then blend), however small
  // the region: their GEMMs have so few rows that reading the weights costs the same either way.
  explicit SparseLevels(LatentMask mask, std::int64_t dense_up_to = default_dense_up_to())
      : mask_(std::move(mask)), dense_up_to_(dense_up_to) {}
  const LatentMask& latent() const { return mask_; }
  std::int64_t dense_up_to() const { return dense_up_to_; }
  // 0 (every level by its share) unless FISEDIT_SPARSE_DENSE_UP_TO (read once) says otherwise: the
  // knob fisedit-bench measures the line with.
  static std::int64_t default_dense_up_to();

  enum class Coverage { none, partial, all };
  struct Level {
    Coverage coverage = Coverage::none;
    DeviceTensor mask;       // [h * w], activation dtype, for partial coverage
    DeviceTensor positions;  // I32 [P], for partial coverage
    DeviceTensor inverse;    // I32 [h * w]: each place's index in positions, or -1 (for scatters)
    DeviceTensor near;       // I32: see near_positions(); made on first use
    bool near_known = false; // near_positions() decided (near stays empty where read whole)
  };
  // The level of size h x w, computed and uploaded on first use.
  const Level& level(Backend& b, std::int64_t h, std::int64_t w);

  // How an edit's layers whose output is at a level of h x w positions run (SparseStep::Plan).
  enum class Plan {
    dense,   // in full (no edit, a fully masked level, or the reference route), then spatial_output()
    cached,  // not at all: its output is the cached one (cached_output())
    sparse,  // at positions() only, then scatter_output()
  };
  Plan plan(Backend& b, std::int64_t h, std::int64_t w);
  // I32 [Q]: the places of a sparse level within two places of an active one, the active ones
  // excluded: all a step reads of the cached values of an output RecordLayout::Reads::near (its
  // active rows it writes first). Nullptr when the level or a neighbouring one does not run sparse:
  // a full pass reads every place.
  const DeviceTensor* near_positions(Backend& b, std::int64_t h, std::int64_t w);
  // Every level's masks and near positions made now: their uploads wait for the device, which a
  // recording (Backend::record) may not.
  void make_ready(Backend& b);

private:
  LatentMask mask_;
  std::int64_t dense_up_to_ = 0;
  std::map<std::pair<std::int64_t, std::int64_t>, Level> levels_;
};

class SparseStep {
public:
  // Dense call, kept in `out`.
  explicit SparseStep(LayerRecord& out);
  // Edit call against `cached` (a record of the same step of the base generation), kept in `out`.
  // `reference`: compute every layer densely and keep the cached values outside the mask afterwards:
  // the same result as sparse execution, by the obvious route (the tests' oracle).
  // `keep`: the record `cached` was staged from when the base's record lives in host memory
  // (edit/cache_store.h): what `out` keeps unchanged from the cache is taken from it, entry for
  // entry, not from the staging buffers, which the next steps overwrite.
  SparseStep(const LayerRecord& cached, SparseLevels& levels, LayerRecord& out, bool reference = false,
             const LayerRecord* keep = nullptr);

  // How a layer whose output is at a level of h x w positions runs: dense without a cached record
  // or on the reference route, else as SparseLevels::plan says.
  using Plan = SparseLevels::Plan;
  Plan plan(Backend& b, std::int64_t h, std::int64_t w);
  // I32 [P]: the active positions of a level, for Plan::sparse.
  const DeviceTensor& positions(Backend& b, std::int64_t h, std::int64_t w);
  // The network's keys (the U-Net calls this first in every forward): sizes the record it keeps and
  // checks that the cached one is of the same network. Throws Error(invalid_argument) otherwise.
  void begin(const RecordLayout& layout);

  // The cached record is this step's own copy (a recording's, pipeline/step_replay.h): scatter_output
  // writes the active rows into the cached output itself and keeps that, instead of a new copy.
  void scatter_in_place() { in_place_ = true; }
  // By OutputKey (sized at begin()): the level's positions for each output scatter_output wrote in
  // place, else empty: the rows that differ from the cached output.
  const std::vector<DeviceTensor>& scattered_positions() const { return scattered_; }
  // By OutputKey (sized at begin()), in place: for each output scattered in place whose cached
  // values the step reads near its level's active positions only, those places
  // (SparseLevels::near_positions); empty for the others (read whole).
  const std::vector<DeviceTensor>& read_near_positions() const { return read_near_; }

  // A layer's recorded output as it was (Plan::cached), kept for the edited generation.
  DeviceTensor cached_output(OutputKey key);
  // values [N, P, C] at the active positions (+ addend, [N, P, C] or per image [N, 1, C], in the same
  // pass) -> the cached output with them written in, shaped like the cached output, kept.
  DeviceTensor scatter_output(Backend& b, OutputKey key, const DeviceTensor& values, std::int64_t h, std::int64_t w,
                              const DeviceTensor* addend = nullptr);
  // scatter_output for several outputs of one level at once (no addend): in place, one launch
  // (Backend::scatter_rows_into), e.g. a transformer block's keys and values.
  std::vector<DeviceTensor> scatter_outputs(Backend& b, std::span<const OutputKey> keys,
                                            std::span<const DeviceTensor> values, std::int64_t h, std::int64_t w);
  // A GroupNorm whose output nobody reads (its layer runs Plan::cached): keeps its statistics.
  void skip_group_norm(NormKey key);
  // A GroupNorm's cached statistics, for one applied at gathered positions (Plan::sparse), e.g. in a
  // sparse convolution's gather (Backend::conv2d_at with an InputNorm); kept.
  const GroupNormStats& cached_norm_stats(NormKey key);
  // A GroupNorm of x [N, P, C] gathered at a partly covered level's active positions, with the cached
  // statistics (Plan::sparse).
  DeviceTensor group_norm_at(Backend& b, NormKey key, const DeviceTensor& x, const DeviceTensor& gamma,
                             const DeviceTensor& beta, int groups, float eps, bool silu);

  // Cross-attention through explicit probabilities (docs/method.md section 3.3) for the rest of this step:
  // every cross-attention layer keeps the probabilities of its conditional batch item in the record.
  // With `source` (the base generation's record of the same step) and `columns` (I32 [Lk]: for each
  // token of the new prompt the index of the same token in the base prompt, or -1; see
  // token_alignment), the conditional item's columns of shared tokens first take the source's
  // probabilities (attention control), as Prompt-to-Prompt replaces the maps of unchanged words.
  void explicit_cross_attention(const LayerRecord* source = nullptr, DeviceTensor columns = {});
  // Cross-attention q [N, Lq, C], k and v [N, Lk, C] -> [N, Lq, C]: Backend::attention, or through
  // explicit probabilities once explicit_cross_attention() was called.
  DeviceTensor cross_attention(Backend& b, ProbsKey key, const DeviceTensor& q, const DeviceTensor& k,
                               const DeviceTensor& v, const AttentionParams& params);

  // A spatial layer's output: [N, H, W, C] or [N, H * W, C] with the level's H, W given.
  DeviceTensor spatial_output(Backend& b, OutputKey key, const DeviceTensor& computed, std::int64_t h, std::int64_t w);
  // A GroupNorm of x [N, H, W, C], with the statistics the mode calls for.
  DeviceTensor group_norm(Backend& b, NormKey key, const DeviceTensor& x, const DeviceTensor& gamma,
                          const DeviceTensor& beta, int groups, float eps, bool silu);
  // Throws Error(invalid_argument) naming the first layer whose entry the step did not keep (every
  // layer of the network must run once per step).
  void finish() const;

private:
  using Coverage = SparseLevels::Coverage;
  const DeviceTensor& cached(OutputKey key) const;
  const GroupNormStats& cached(NormKey key) const;
  void keep(OutputKey key, DeviceTensor t);
  void keep(NormKey key, GroupNormStats stats);
  // scatter_output's parts: the cached output `values` [N, P, C] are written into (checked), and
  // keeping it once written in place (with the positions it differs at and those read near them).
  const DeviceTensor& scatter_target(OutputKey key, const DeviceTensor& values);
  void keep_scattered(Backend& b, OutputKey key, const DeviceTensor& base, std::int64_t h, std::int64_t w);

  // What `out_` keeps of a cached entry taken unchanged.
  const DeviceTensor& kept(OutputKey k) const;
  const GroupNormStats& kept(NormKey k) const { return (keep_ ? keep_ : cached_)->norm_stats[k.index]; }

  const LayerRecord* cached_ = nullptr;
  const LayerRecord* keep_ = nullptr;
  SparseLevels* levels_ = nullptr;
  bool reference_ = false;
  LayerRecord& out_;
  const RecordLayout* layout_ = nullptr;
  bool explicit_attention_ = false;
  bool in_place_ = false;
  std::vector<DeviceTensor> scattered_, read_near_;
  const LayerRecord* attention_source_ = nullptr;
  DeviceTensor attention_columns_;
};

}  // namespace fisedit
