#include "sparse/sparse_step.h"

#include "core/error.h"

#include <algorithm>
#include <cstdlib>

namespace fisedit {

std::size_t LayerRecord::bytes() const {
  std::size_t n = 0;
  for (const auto& t : outputs) n += t.nbytes();
  for (const auto& s : norm_stats) n += s.mean.nbytes() + s.var.nbytes();
  for (const auto& p : cross_attention) n += p.nbytes();
  return n;
}

double LatentMask::fraction() const {
  if (values.empty()) return 0.0;
  return static_cast<double>(std::count_if(values.begin(), values.end(), [](float v) { return v != 0.0f; })) /
         static_cast<double>(values.size());
}

bool LatentMask::empty() const { return std::all_of(values.begin(), values.end(), [](float v) { return v == 0.0f; }); }
bool LatentMask::full() const { return std::all_of(values.begin(), values.end(), [](float v) { return v != 0.0f; }); }

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

SparseStep::SparseStep(LayerRecord& out) : out_(out) { out_ = {}; }

SparseStep::SparseStep(const LayerRecord& cached, SparseLevels& levels, LayerRecord& out, bool reference,
                       const LayerRecord* keep)
    : cached_(&cached), keep_(keep), levels_(&levels), reference_(reference), out_(out) {
  if (keep_ && (keep_->outputs.size() != cached_->outputs.size() || keep_->norm_stats.size() != cached_->norm_stats.size()))
    throw Error(ErrorCode::invalid_argument, "a staged record does not match the record it was staged from");
  out_ = {};
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

const DeviceTensor& SparseStep::next_cached() {
  if (next_output_ >= cached_->outputs.size())
    throw Error(ErrorCode::invalid_argument, "the edit runs more layers than the cached generation recorded");
  return cached_->outputs[next_output_++];
}

SparseStep::Plan SparseStep::plan(Backend& b, std::int64_t h, std::int64_t w) {
  if (!cached_ || reference_) return Plan::dense;
  const auto& level = levels_->level(b, h, w);
  switch (level.coverage) {
    case Coverage::none: return Plan::cached;
    case Coverage::all: return Plan::dense;
    case Coverage::partial: {
      // Past this share of a level, gathering costs more than it saves and the level runs in full
      // (then blended): measured on an H100, SD2 at 768x768, a 50% region ran at 0.88x of dense.
      constexpr double kDenseAbove = 0.45;
      if (h * w <= levels_->dense_up_to()) return Plan::dense;
      return static_cast<double>(level.positions.dim(0)) > kDenseAbove * static_cast<double>(h * w) ? Plan::dense
                                                                                                  : Plan::sparse;
    }
  }
  return Plan::dense;
}

std::int64_t SparseLevels::default_dense_up_to() {
  static const std::int64_t positions = [] {
    const char* env = std::getenv("FISEDIT_SPARSE_DENSE_UP_TO");
    return env && *env ? std::max<std::int64_t>(0, std::atoll(env)) : std::int64_t{0};
  }();
  return positions;
}

const DeviceTensor& SparseStep::positions(Backend& b, std::int64_t h, std::int64_t w) {
  return levels_->level(b, h, w).positions;
}

DeviceTensor SparseStep::cached_output() {
  const auto cached = next_cached();
  out_.outputs.push_back(kept_output(next_output_ - 1));
  return cached;
}

DeviceTensor SparseStep::scatter_output(Backend& b, const DeviceTensor& values, std::int64_t h, std::int64_t w,
                                        const DeviceTensor* addend) {
  const auto& cached = next_cached();
  const auto n = cached.dim(0), c = cached.dim(-1);
  if (values.rank() != 3 || values.dim(0) != n || values.dim(2) != c)
    throw Error(ErrorCode::invalid_argument, "sparse values " + shape_to_string(values.shape()) +
                                                 " do not match the cached output " + shape_to_string(cached.shape()));
  const auto& level = levels_->level(b, h, w);
  auto result = b.scatter_positions(cached.reshaped({n, h * w, c}), values, level.positions, addend, &level.inverse)
                    .reshaped(cached.shape());
  out_.outputs.push_back(result);
  return result;
}

const GroupNormStats& SparseStep::cached_norm_stats() {
  if (!cached_ || next_norm_ >= cached_->norm_stats.size())
    throw Error(ErrorCode::invalid_argument, "the edit runs more GroupNorms than the cached generation recorded");
  out_.norm_stats.push_back(kept_stats(next_norm_));
  return cached_->norm_stats[next_norm_++];
}

DeviceTensor SparseStep::group_norm_at(Backend& b, const DeviceTensor& x, const DeviceTensor& gamma,
                                       const DeviceTensor& beta, int groups, float eps, bool silu) {
  return b.group_norm(x, gamma, beta, groups, eps, silu, nullptr, &cached_norm_stats());
}

void SparseStep::skip_group_norm() {
  if (!cached_ || next_norm_ >= cached_->norm_stats.size())
    throw Error(ErrorCode::invalid_argument, "the edit runs more GroupNorms than the cached generation recorded");
  out_.norm_stats.push_back(kept_stats(next_norm_++));
}

void SparseStep::explicit_cross_attention(const LayerRecord* source, DeviceTensor columns) {
  if (source && (columns.empty() || columns.dtype() != DType::i32 || columns.rank() != 1))
    throw Error(ErrorCode::invalid_argument, "attention control needs an I32 [Lk] column map");
  explicit_attention_ = true;
  attention_source_ = source;
  attention_columns_ = std::move(columns);
  next_probs_ = 0;
}

DeviceTensor SparseStep::cross_attention(Backend& b, const DeviceTensor& q, const DeviceTensor& k,
                                         const DeviceTensor& v, const AttentionParams& params) {
  if (!explicit_attention_) return b.attention(q, k, v, params);
  auto probs = b.attention_probs(q, k, params);  // [N, heads, Lq, Lk]
  const std::int64_t cond = probs.dim(0) - 1;    // [uncond, cond] with guidance, else cond alone
  if (attention_source_) {
    if (next_probs_ >= attention_source_->cross_attention.size())
      throw Error(ErrorCode::invalid_argument,
                  "the edit runs more cross-attention layers than the cached generation recorded");
    // Only the conditional item: the unconditional one sees the (unchanged) negative prompt.
    probs = b.replace_attention_columns(probs, attention_source_->cross_attention[next_probs_++], attention_columns_,
                                        cond);
  }
  // A copy, not a view: a view would keep the unconditional half's memory alive in the cache too.
  out_.cross_attention.push_back(b.clone(probs.slice_rows(cond, cond + 1)));
  return b.attention_apply(probs, v);
}

DeviceTensor SparseStep::spatial_output(Backend& b, const DeviceTensor& computed, std::int64_t h, std::int64_t w) {
  DeviceTensor result = computed, kept;
  if (cached_) {
    const auto& cached = next_cached();
    if (cached.shape() != computed.shape())
      throw Error(ErrorCode::invalid_argument, "a layer output of shape " + shape_to_string(computed.shape()) +
                                                   " does not match the cached " + shape_to_string(cached.shape()));
    const auto& level = levels_->level(b, h, w);
    switch (level.coverage) {
      case Coverage::none:
        result = cached;
        kept = kept_output(next_output_ - 1);
        break;
      case Coverage::all: break;
      case Coverage::partial: {
        const auto n = computed.dim(0), c = computed.dim(-1);
        result = b.select_positions(level.mask, computed.reshaped({n, h * w, c}), cached.reshaped({n, h * w, c}))
                     .reshaped(computed.shape());
        break;
      }
    }
  }
  out_.outputs.push_back(kept.empty() ? result : kept);
  return result;
}

DeviceTensor SparseStep::group_norm(Backend& b, const DeviceTensor& x, const DeviceTensor& gamma,
                                    const DeviceTensor& beta, int groups, float eps, bool silu) {
  const GroupNormStats* stats_in = nullptr;
  const GroupNormStats* kept = nullptr;
  if (cached_) {
    if (next_norm_ >= cached_->norm_stats.size())
      throw Error(ErrorCode::invalid_argument, "the edit runs more GroupNorms than the cached generation recorded");
    const auto& cached = cached_->norm_stats[next_norm_];
    // A small edit barely moves the statistics (METHOD 3.3); a level computed in full takes its own,
    // so an edit whose mask covers everything is the dense generation.
    if (levels_->level(b, x.dim(1), x.dim(2)).coverage != Coverage::all) {
      stats_in = &cached;
      kept = &kept_stats(next_norm_);
    }
    ++next_norm_;
  }
  GroupNormStats stats;
  auto y = b.group_norm(x, gamma, beta, groups, eps, silu, stats_in ? nullptr : &stats, stats_in);
  out_.norm_stats.push_back(kept ? *kept : stats);
  return y;
}

void SparseStep::finish() const {
  if ((cached_ && (next_output_ != cached_->outputs.size() || next_norm_ != cached_->norm_stats.size())) ||
      (attention_source_ && next_probs_ != attention_source_->cross_attention.size()))
    throw Error(ErrorCode::invalid_argument, "the edit ran a different network than the cached generation recorded");
}

}  // namespace fisedit
