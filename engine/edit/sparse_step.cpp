// Recording a U-Net call and replaying it as an edit (sparse_step.h): levels, plans, scatters, statistics.
#include "edit/sparse_step.h"

#include "core/env.h"
#include "core/error.h"

#include <algorithm>
#include <cstdlib>

namespace fisedit {

std::size_t LayerRecord::bytes() const {
  std::size_t n = 0;
  for (const auto& t : outputs) n += t.nbytes();
  for (const auto& s : norm_stats) n += s.mean.nbytes() + s.var.nbytes();
  for (const auto& p : cross_attention) n += p.nbytes();
  for (const auto& d : deltas)
    if (!d.empty()) n += d.rows.nbytes() + d.positions.nbytes();
  return n;
}

bool LayerRecord::has_deltas() const {
  return std::any_of(deltas.begin(), deltas.end(), [](const RowDelta& d) { return !d.empty(); });
}

LayerRecord materialize(Backend& b, const LayerRecord& record) {
  LayerRecord out = record;
  out.deltas.clear();
  for (std::size_t k = 0; k < record.deltas.size(); ++k) {
    const RowDelta& d = record.deltas[k];
    if (d.empty()) continue;
    const DeviceTensor& base = record.outputs.at(k);
    const auto n = base.dim(0), c = base.dim(-1);
    if (base.host_resident() || d.rows.rank() != 3 || d.rows.dim(0) != n || d.rows.dim(2) != c || n * c == 0 ||
        base.numel() % (n * c) != 0)
      throw Error(ErrorCode::invalid_argument, "a record's row delta " + shape_to_string(d.rows.shape()) +
                                                   " does not fit its entry " + shape_to_string(base.shape()) +
                                                   (base.host_resident() ? " in host memory" : ""));
    const auto whole = b.clone(base);
    b.scatter_positions_into(whole.reshaped({n, base.numel() / (n * c), c}), d.rows, d.positions);
    out.outputs[k] = whole;
  }
  return out;
}

bool has_unconditional(const LayerRecord& record) {
  const auto usable = [](const DeviceTensor& t) { return !t.empty() && t.rank() >= 1 && t.dim(0) == 2; };
  if (record.has_deltas() || record.outputs.empty()) return false;
  return std::all_of(record.outputs.begin(), record.outputs.end(), usable) &&
         std::all_of(record.norm_stats.begin(), record.norm_stats.end(),
                     [&](const GroupNormStats& s) { return usable(s.mean) && usable(s.var); });
}

LayerRecord with_unconditional(Backend& b, const LayerRecord& source, const LayerRecord& conditional) {
  if (!has_unconditional(source) || source.outputs.size() != conditional.outputs.size() ||
      source.norm_stats.size() != conditional.norm_stats.size() || conditional.has_deltas())
    throw Error(ErrorCode::invalid_argument, "the unconditional item's record does not match the conditional one's");
  std::vector<Backend::TensorCopy> copies, from_host;
  copies.reserve(4 * (source.outputs.size() + 2 * source.norm_stats.size()));
  const auto join = [&](const DeviceTensor& uncond, const DeviceTensor& cond) {
    Shape one = uncond.shape();
    one[0] = 1;
    if (cond.shape() != one || cond.dtype() != uncond.dtype())
      throw Error(ErrorCode::invalid_argument, "a conditional entry " + shape_to_string(cond.shape()) +
                                                   " does not match the unconditional " + shape_to_string(uncond.shape()));
    auto both = b.allocate(uncond.dtype(), uncond.shape());
    (uncond.host_resident() ? from_host : copies).push_back({uncond.slice_rows(0, 1), both.slice_rows(0, 1)});
    copies.push_back({cond, both.slice_rows(1, 2)});
    return both;
  };
  LayerRecord out;
  out.outputs.reserve(source.outputs.size());
  for (std::size_t k = 0; k < source.outputs.size(); ++k) out.outputs.push_back(join(source.outputs[k], conditional.outputs[k]));
  out.norm_stats.reserve(source.norm_stats.size());
  for (std::size_t k = 0; k < source.norm_stats.size(); ++k)
    out.norm_stats.push_back({join(source.norm_stats[k].mean, conditional.norm_stats[k].mean),
                              join(source.norm_stats[k].var, conditional.norm_stats[k].var)});
  out.cross_attention = conditional.cross_attention;
  b.copy_into(copies);
  if (!from_host.empty()) b.wait(b.copy_async(from_host));
  return out;
}

std::vector<float> level_mask(const LatentMask& latent, std::int64_t h, std::int64_t w) {
  std::vector<float> m = latent.values;
  std::int64_t mh = latent.height, mw = latent.width;
  while (mh > h || mw > w) {  // 2x2 max-pool, ceil mode: the down path's ceil(n / 2)
    const std::int64_t nh = (mh + 1) / 2, nw = (mw + 1) / 2;
    std::vector<float> next(static_cast<std::size_t>(nh * nw), 0.0f);
    for (std::int64_t y = 0; y < mh; ++y)
      for (std::int64_t x = 0; x < mw; ++x)
        if (m[y * mw + x] != 0.0f) next[(y / 2) * nw + x / 2] = 1.0f;
    m = std::move(next);
    mh = nh;
    mw = nw;
  }
  if (mh != h || mw != w)
    throw Error(ErrorCode::invalid_argument, "a " + std::to_string(h) + "x" + std::to_string(w) +
                                                 " layer is not a level of the " + std::to_string(latent.height) + "x" +
                                                 std::to_string(latent.width) + " latent mask");
  return m;
}

OutputKey RecordLayout::output(std::string name, Reads reads) {
  outputs_.push_back(std::move(name));
  reads_.push_back(reads);
  return {static_cast<std::uint32_t>(outputs_.size() - 1)};
}

NormKey RecordLayout::norm(std::string name) {
  norms_.push_back(std::move(name));
  return {static_cast<std::uint32_t>(norms_.size() - 1)};
}

ProbsKey RecordLayout::cross_attention(std::string name) {
  probs_.push_back(std::move(name));
  return {static_cast<std::uint32_t>(probs_.size() - 1)};
}

SparseStep::SparseStep(LayerRecord& out) : out_(out) { out_ = {}; }

SparseStep::SparseStep(const LayerRecord& cached, SparseLevels& levels, LayerRecord& out, bool reference,
                       const LayerRecord* keep)
    : cached_(&cached), keep_(keep), levels_(&levels), reference_(reference), out_(out) {
  if (keep_ && (keep_->outputs.size() != cached_->outputs.size() || keep_->norm_stats.size() != cached_->norm_stats.size()))
    throw Error(ErrorCode::invalid_argument, "a staged record does not match the record it was staged from");
  out_ = {};
}

void SparseStep::begin(const RecordLayout& layout) {
  if (cached_ && (cached_->outputs.size() != layout.outputs() || cached_->norm_stats.size() != layout.norms()))
    throw Error(ErrorCode::invalid_argument,
                "the cached generation was recorded by a different network (" + std::to_string(cached_->outputs.size()) +
                    " layer outputs and " + std::to_string(cached_->norm_stats.size()) + " GroupNorms; this one has " +
                    std::to_string(layout.outputs()) + " and " + std::to_string(layout.norms()) + ")");
  if (attention_source_ && attention_source_->cross_attention.size() != layout.cross_attentions())
    throw Error(ErrorCode::invalid_argument, "the attention-control source was recorded by a different network");
  layout_ = &layout;
  out_.outputs.assign(layout.outputs(), DeviceTensor{});
  scattered_.assign(in_place_ ? layout.outputs() : 0, DeviceTensor{});
  read_near_.assign(in_place_ ? layout.outputs() : 0, DeviceTensor{});
  out_.norm_stats.assign(layout.norms(), GroupNormStats{});
  out_.cross_attention.assign(explicit_attention_ ? layout.cross_attentions() : 0, DeviceTensor{});
}

namespace {

// A record entry as a whole: one with a row delta must have been merged (materialize) first.
const DeviceTensor& whole_entry(const LayerRecord& record, std::uint32_t k, const RecordLayout* layout) {
  if (k < record.deltas.size() && !record.deltas[k].empty())
    throw Error(ErrorCode::invalid_argument, "the cached record's entry of " + (layout ? layout->name(OutputKey{k}) : std::string("a layer")) +
                                                 " holds changed rows only: merge them first (materialize)");
  return record.outputs[k];
}

}  // namespace

const DeviceTensor& SparseStep::cached(OutputKey key) const {
  if (!cached_ || key.index >= cached_->outputs.size())
    throw Error(ErrorCode::invalid_argument, "the cached generation has no record of this layer");
  return whole_entry(*cached_, key.index, layout_);
}

const DeviceTensor& SparseStep::kept(OutputKey k) const {
  return whole_entry(keep_ ? *keep_ : *cached_, k.index, layout_);
}

const GroupNormStats& SparseStep::cached(NormKey key) const {
  if (!cached_ || key.index >= cached_->norm_stats.size())
    throw Error(ErrorCode::invalid_argument, "the cached generation has no record of this GroupNorm");
  return cached_->norm_stats[key.index];
}

void SparseStep::keep(OutputKey key, DeviceTensor t) {
  if (!layout_ || key.index >= out_.outputs.size())
    throw Error(ErrorCode::invalid_argument, "a layer output outside the step's record layout (begin() not called?)");
  auto& slot = out_.outputs[key.index];
  if (!slot.empty())
    throw Error(ErrorCode::invalid_argument, "layer " + layout_->name(key) + " ran twice in one step");
  slot = std::move(t);
}

void SparseStep::keep(NormKey key, GroupNormStats stats) {
  if (!layout_ || key.index >= out_.norm_stats.size())
    throw Error(ErrorCode::invalid_argument, "a GroupNorm outside the step's record layout (begin() not called?)");
  auto& slot = out_.norm_stats[key.index];
  if (!slot.mean.empty())
    throw Error(ErrorCode::invalid_argument, "GroupNorm " + layout_->name(key) + " ran twice in one step");
  slot = std::move(stats);
}

const SparseLevels::Level& SparseLevels::level(Backend& b, std::int64_t h, std::int64_t w) {
  auto it = levels_.find({h, w});
  if (it != levels_.end()) return it->second;
  const auto values = level_mask(mask_, h, w);
  std::vector<std::int64_t> index, inverse(static_cast<std::size_t>(h * w), -1);
  for (std::int64_t i = 0; i < h * w; ++i)
    if (values[static_cast<std::size_t>(i)] != 0.0f) {
      inverse[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(index.size());
      index.push_back(i);
    }
  Level level;
  level.coverage = index.empty() ? Coverage::none : static_cast<std::int64_t>(index.size()) == h * w ? Coverage::all : Coverage::partial;
  if (level.coverage == Coverage::partial) {
    level.mask = b.upload(Tensor::from_f32({h * w}, values));
    level.positions = b.upload(Tensor::from_i64({static_cast<std::int64_t>(index.size())}, index));
    level.inverse = b.upload(Tensor::from_i64({h * w}, inverse));
  }
  return levels_.emplace(std::pair{h, w}, std::move(level)).first->second;
}

SparseStep::Plan SparseStep::plan(Backend& b, std::int64_t h, std::int64_t w) {
  if (!cached_ || reference_) return Plan::dense;
  return levels_->plan(b, h, w);
}

SparseLevels::Plan SparseLevels::plan(Backend& b, std::int64_t h, std::int64_t w) {
  const auto& level = this->level(b, h, w);
  switch (level.coverage) {
    case Coverage::none: return Plan::cached;
    case Coverage::all: return Plan::dense;
    case Coverage::partial: {
      // Past this share of a level, gathering costs more than it saves and the level runs in full
      // (then blended): measured on an H100, SD2 at 768x768, a 50% region ran at 0.88x of dense.
      constexpr double kDenseAbove = 0.45;
      if (h * w <= dense_up_to_) return Plan::dense;
      return static_cast<double>(level.positions.dim(0)) > kDenseAbove * static_cast<double>(h * w) ? Plan::dense
                                                                                                  : Plan::sparse;
    }
  }
  return Plan::dense;
}

namespace {

// The levels of a latent mask's size as the down path makes them (sizes halved, rounding up).
std::vector<std::pair<std::int64_t, std::int64_t>> level_sizes(const LatentMask& mask) {
  std::vector<std::pair<std::int64_t, std::int64_t>> sizes;
  for (std::int64_t lh = mask.height, lw = mask.width; lh > 0 && lw > 0; lh = (lh + 1) / 2, lw = (lw + 1) / 2) {
    sizes.emplace_back(lh, lw);
    if (lh == 1 && lw == 1) break;
  }
  return sizes;
}

}  // namespace

void SparseLevels::make_ready(Backend& b) {
  for (const auto& [h, w] : level_sizes(mask_)) near_positions(b, h, w);
}

const DeviceTensor* SparseLevels::near_positions(Backend& b, std::int64_t h, std::int64_t w) {
  const auto sizes = level_sizes(mask_);
  const auto at = std::find(sizes.begin(), sizes.end(), std::pair{h, w});
  if (at == sizes.end()) return nullptr;
  level(b, h, w);
  Level& entry = levels_.at({h, w});  // map entries stay where they are as others are made
  if (!entry.near_known) {
    // This level and its neighbours must all run sparse, or a full pass (a dense convolution of the
    // next level, a blend) reads every place.
    const auto i = at - sizes.begin();
    bool sparse = true;
    for (auto j = std::max<std::ptrdiff_t>(i - 1, 0); j <= std::min<std::ptrdiff_t>(i + 1, sizes.size() - 1); ++j)
      sparse = sparse && plan(b, sizes[j].first, sizes[j].second) == Plan::sparse;
    if (sparse) {
      constexpr std::int64_t kReach = 2;
      const auto active = level_mask(mask_, h, w);
      std::vector<std::int64_t> near;
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) {
          if (active[static_cast<std::size_t>(y * w + x)] != 0.0f) continue;
          bool close = false;
          for (std::int64_t v = std::max<std::int64_t>(y - kReach, 0); !close && v <= std::min(y + kReach, h - 1); ++v)
            for (std::int64_t u = std::max<std::int64_t>(x - kReach, 0); !close && u <= std::min(x + kReach, w - 1); ++u)
              close = active[static_cast<std::size_t>(v * w + u)] != 0.0f;
          if (close) near.push_back(y * w + x);
        }
      entry.near = b.upload(Tensor::from_i64({static_cast<std::int64_t>(near.size())}, near));
    }
    entry.near_known = true;
  }
  return entry.near.empty() ? nullptr : &entry.near;
}

std::int64_t SparseLevels::default_dense_up_to() {
  static const std::int64_t positions = env_int("FISEDIT_SPARSE_DENSE_UP_TO", 0, 0);
  return positions;
}

const DeviceTensor& SparseStep::positions(Backend& b, std::int64_t h, std::int64_t w) {
  return levels_->level(b, h, w).positions;
}

DeviceTensor SparseStep::cached_output(OutputKey key) {
  const auto result = cached(key);
  keep(key, kept(key));
  return result;
}

const DeviceTensor& SparseStep::scatter_target(OutputKey key, const DeviceTensor& values) {
  const auto& base = cached(key);
  if (values.rank() != 3 || values.dim(0) != base.dim(0) || values.dim(2) != base.dim(-1))
    throw Error(ErrorCode::invalid_argument, "sparse values " + shape_to_string(values.shape()) +
                                                 " do not match the cached output " + shape_to_string(base.shape()) +
                                                 " of " + layout_->name(key));
  return base;
}

void SparseStep::keep_scattered(Backend& b, OutputKey key, const DeviceTensor& base, std::int64_t h, std::int64_t w) {
  keep(key, base);
  scattered_.at(key.index) = levels_->level(b, h, w).positions;
  if (layout_->reads(key) == RecordLayout::Reads::near)
    if (const auto* near = levels_->near_positions(b, h, w)) read_near_.at(key.index) = *near;
}

DeviceTensor SparseStep::scatter_output(Backend& b, OutputKey key, const DeviceTensor& values, std::int64_t h,
                                        std::int64_t w, const DeviceTensor* addend) {
  const auto& base = scatter_target(key, values);
  const auto n = base.dim(0), c = base.dim(-1);
  const auto& level = levels_->level(b, h, w);
  if (in_place_) {
    b.scatter_positions_into(base.reshaped({n, h * w, c}), values, level.positions, addend);
    keep_scattered(b, key, base, h, w);
    return base;
  }
  auto result = b.scatter_positions(base.reshaped({n, h * w, c}), values, level.positions, addend, &level.inverse)
                    .reshaped(base.shape());
  keep(key, result);
  return result;
}

std::vector<DeviceTensor> SparseStep::scatter_outputs(Backend& b, std::span<const OutputKey> keys,
                                                     std::span<const DeviceTensor> values, std::int64_t h, std::int64_t w) {
  if (keys.size() != values.size())
    throw Error(ErrorCode::invalid_argument, "scatter_outputs: " + std::to_string(keys.size()) + " outputs, " +
                                                 std::to_string(values.size()) + " values");
  std::vector<DeviceTensor> out;
  out.reserve(keys.size());
  if (!in_place_) {
    for (std::size_t i = 0; i < keys.size(); ++i) out.push_back(scatter_output(b, keys[i], values[i], h, w));
    return out;
  }
  const auto& level = levels_->level(b, h, w);
  std::vector<Backend::RowsAt> scatters;
  scatters.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const auto& base = scatter_target(keys[i], values[i]);
    scatters.push_back({values[i], level.positions, base.reshaped({base.dim(0), h * w, base.dim(-1)})});
    out.push_back(base);
  }
  b.scatter_rows_into(scatters);
  for (std::size_t i = 0; i < keys.size(); ++i) keep_scattered(b, keys[i], out[i], h, w);
  return out;
}

const GroupNormStats& SparseStep::cached_norm_stats(NormKey key) {
  const auto& stats = cached(key);
  keep(key, kept(key));
  return stats;
}

DeviceTensor SparseStep::group_norm_at(Backend& b, NormKey key, const DeviceTensor& x, const DeviceTensor& gamma,
                                       const DeviceTensor& beta, int groups, float eps, bool silu) {
  return b.group_norm(x, gamma, beta, groups, eps, silu, nullptr, &cached_norm_stats(key));
}

void SparseStep::skip_group_norm(NormKey key) {
  cached(key);
  keep(key, kept(key));
}

void SparseStep::explicit_cross_attention(const LayerRecord* source, DeviceTensor columns) {
  if (source && (columns.empty() || columns.dtype() != DType::i32 || columns.rank() != 1))
    throw Error(ErrorCode::invalid_argument, "attention control needs an I32 [Lk] column map");
  explicit_attention_ = true;
  attention_source_ = source;
  attention_columns_ = std::move(columns);
}

DeviceTensor SparseStep::cross_attention(Backend& b, ProbsKey key, const DeviceTensor& q, const DeviceTensor& k,
                                         const DeviceTensor& v, const AttentionParams& params) {
  if (!explicit_attention_) return b.attention(q, k, v, params);
  if (!layout_ || key.index >= out_.cross_attention.size())
    throw Error(ErrorCode::invalid_argument, "a cross-attention outside the step's record layout");
  auto probs = b.attention_probs(q, k, params);  // [N, heads, Lq, Lk]
  const std::int64_t cond = probs.dim(0) - 1;    // [uncond, cond] with guidance, else cond alone
  if (attention_source_) {
    // Only the conditional item: the unconditional one sees the (unchanged) negative prompt.
    probs = b.replace_attention_columns(probs, attention_source_->cross_attention[key.index], attention_columns_, cond);
  }
  // A copy, not a view: a view would keep the unconditional half's memory alive in the cache too.
  out_.cross_attention[key.index] = b.clone(probs.slice_rows(cond, cond + 1));
  return b.attention_apply(probs, v);
}

DeviceTensor SparseStep::spatial_output(Backend& b, OutputKey key, const DeviceTensor& computed, std::int64_t h,
                                        std::int64_t w) {
  DeviceTensor result = computed, kept_entry;
  if (cached_) {
    const auto& base = cached(key);
    if (base.shape() != computed.shape())
      throw Error(ErrorCode::invalid_argument, "the output of " + layout_->name(key) + ", " +
                                                   shape_to_string(computed.shape()) + ", does not match the cached " +
                                                   shape_to_string(base.shape()));
    const auto& level = levels_->level(b, h, w);
    switch (level.coverage) {
      case Coverage::none:
        result = base;
        kept_entry = kept(key);
        break;
      case Coverage::all: break;
      case Coverage::partial: {
        const auto n = computed.dim(0), c = computed.dim(-1);
        result = b.select_positions(level.mask, computed.reshaped({n, h * w, c}), base.reshaped({n, h * w, c}))
                     .reshaped(computed.shape());
        break;
      }
    }
  }
  keep(key, kept_entry.empty() ? result : kept_entry);
  return result;
}

DeviceTensor SparseStep::group_norm(Backend& b, NormKey key, const DeviceTensor& x, const DeviceTensor& gamma,
                                    const DeviceTensor& beta, int groups, float eps, bool silu) {
  // A small edit barely moves the statistics (docs/method.md section 3.8); a level computed in full
  // takes its own, so an edit whose mask covers everything is the dense generation.
  const bool reuse = cached_ && levels_->level(b, x.dim(1), x.dim(2)).coverage != Coverage::all;
  GroupNormStats stats;
  auto y = b.group_norm(x, gamma, beta, groups, eps, silu, reuse ? nullptr : &stats, reuse ? &cached(key) : nullptr);
  keep(key, reuse ? kept(key) : stats);
  return y;
}

void SparseStep::finish() const {
  if (!layout_) throw Error(ErrorCode::invalid_argument, "a step finished without running the network");
  for (std::uint32_t i = 0; i < out_.outputs.size(); ++i)
    if (out_.outputs[i].empty())
      throw Error(ErrorCode::invalid_argument, "the step did not run layer " + layout_->name(OutputKey{i}));
  for (std::uint32_t i = 0; i < out_.norm_stats.size(); ++i)
    if (out_.norm_stats[i].mean.empty())
      throw Error(ErrorCode::invalid_argument, "the step did not run GroupNorm " + layout_->name(NormKey{i}));
  if (attention_source_)
    for (std::uint32_t i = 0; i < out_.cross_attention.size(); ++i)
      if (out_.cross_attention[i].empty())
        throw Error(ErrorCode::invalid_argument, "the step did not run cross-attention " + layout_->name(ProbsKey{i}));
}

}  // namespace fisedit
