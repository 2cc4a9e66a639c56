// The activation cache's spill to host memory and prefetch back (cache_store.h; docs/method.md section 2.3).
#include "edit/cache_store.h"
#include "edit/edit_mask.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>

namespace fisedit {
namespace {

// Tensors in a host block and in a staging buffer start on 256-byte boundaries, as the device pool's
// blocks do: kernels may load them with wide vector instructions.
constexpr std::size_t kAlignment = 256;
// Neighbours in host memory at most this far apart (alignment padding) are staged at the same
// distance, so that the copy stream moves them as one transfer (backend/cuda/cuda_copy.cpp).
constexpr std::size_t kMaxGap = 4096;

std::size_t align_up(std::size_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

// Every tensor of a record, statistics first (small, read by every step, so one run of them), then
// the outputs in call order, then the cross-attention probabilities (detection steps only); spill and
// staging walk the same order, so their layouts line up.
std::vector<DeviceTensor*> tensors_of(LayerRecord& record) {
  std::vector<DeviceTensor*> all;
  all.reserve(2 * record.norm_stats.size() + record.outputs.size() + record.cross_attention.size());
  for (auto& s : record.norm_stats) {
    all.push_back(&s.mean);
    all.push_back(&s.var);
  }
  for (auto& t : record.outputs) all.push_back(&t);
  for (auto& t : record.cross_attention) all.push_back(&t);
  return all;
}

using MemoryKey = std::pair<const std::byte*, std::size_t>;  // address and length: one tensor's memory
MemoryKey key_of(const DeviceTensor& t) { return {t.data(), t.nbytes()}; }

}  // namespace

void CacheByteCounter::add(const DeviceTensor& t) {
  if (t.empty() || t.nbytes() == 0 || !seen_.insert(t.data()).second) return;
  (t.host_resident() ? bytes_.host : bytes_.device) += t.nbytes();
}

void CacheByteCounter::add(const LayerRecord& record, bool delta_bases) {
  for (std::size_t k = 0; k < record.outputs.size(); ++k)
    if (delta_bases || k >= record.deltas.size() || record.deltas[k].empty()) add(record.outputs[k]);
  for (const auto& s : record.norm_stats) {
    add(s.mean);
    add(s.var);
  }
  for (const auto& t : record.cross_attention) add(t);
  for (const auto& d : record.deltas) {
    add(d.rows);
    add(d.positions);
  }
}

void CacheByteCounter::add(std::span<const LayerRecord> records) {
  for (const auto& r : records) add(r);
}

std::size_t spill_to_host(Backend& b, LayerRecord& record, std::size_t keep_on_device) {
  // Host memory holds whole entries only: an edit's row deltas are merged into their entries first.
  if (record.has_deltas()) record = materialize(b, record);
  const auto all = tensors_of(record);
  std::map<MemoryKey, std::size_t> offset_of;
  std::map<MemoryKey, bool> kept;
  std::vector<Backend::TensorCopy> copies;
  std::size_t total = 0, moved = 0, staying = 0;
  for (DeviceTensor* t : all) {
    if (t->empty() || t->host_resident() || t->nbytes() == 0) continue;
    const auto key = key_of(*t);
    if (kept.contains(key) || offset_of.contains(key)) continue;
    if (staying + t->nbytes() <= keep_on_device) {
      staying += t->nbytes();
      kept.emplace(key, true);
      continue;
    }
    offset_of.emplace(key, total);
    moved += t->nbytes();
    total = align_up(total + t->nbytes());
  }
  if (offset_of.empty()) return 0;
  const auto block = b.allocate_host(DType::u8, {static_cast<std::int64_t>(total)});
  std::map<MemoryKey, DeviceTensor> placed;  // the first tensor of each memory, copied once
  for (DeviceTensor* t : all) {
    if (t->empty() || t->host_resident() || t->nbytes() == 0) continue;
    const auto key = key_of(*t);
    if (kept.contains(key)) continue;
    auto view = block.view(offset_of.at(key), t->dtype(), t->shape());
    if (placed.emplace(key, view).second) copies.push_back({*t, view});
    *t = std::move(view);  // the device tensor lives on in the copy until the copy is done
  }
  b.copy_async(copies);
  return moved;
}

int whole_spill_steps(int steps) {
  return steps <= 1 ? 0 : default_detection_steps(steps);
}

CacheSpill::CacheSpill(Backend& b, std::optional<std::size_t> device_budget, int steps)
    : b_(b), budget_(device_budget), steps_(steps), whole_steps_(whole_spill_steps(steps)) {}

void CacheSpill::keep(LayerRecord& record) {
  const int step = next_++;
  const auto remaining = static_cast<std::size_t>(std::max(1, steps_ - step));  // this step and those to come
  // An entry kept as a row delta is its base's memory (counted with the base): only its rows are this
  // record's. (Entries an edit takes unchanged are the base's too, but the record cannot tell them.)
  CacheByteCounter counter;
  counter.add(record, false);
  const std::size_t bytes = counter.bytes().device;
  if (bytes == 0) return;
  const std::size_t left = budget_ ? *budget_ - std::min(*budget_, device_bytes_) : 0;
  // Steps are recorded in order and are all the same size: a step stays whole when the rest fit too.
  if (!budget_ || bytes <= left / remaining) {
    device_bytes_ += bytes;
    return;
  }
  ++spilled_steps_;
  if (step < whole_steps_) {
    spill_to_host(b_, record);
    return;
  }
  // An even share of what is left stays, so that each step an edit reads copies about as much.
  device_bytes_ += bytes - spill_to_host(b_, record, left / remaining);
}

CachePrefetch::CachePrefetch(Backend& b, const std::vector<LayerRecord>& steps, int depth)
    : b_(b), steps_(steps), slots_(static_cast<std::size_t>(std::max(2, depth))) {}

std::optional<std::pair<std::int64_t, std::int64_t>> output_level(const DeviceTensor& output, const LatentMask& latent) {
  // [N, H, W, C] says it; [N, H * W, C] is the level with that many positions (the levels' sizes fall
  // by about 4x each, so at most one matches).
  if (output.rank() == 4) return std::pair{output.dim(1), output.dim(2)};
  if (output.rank() == 3)
    for (std::int64_t lh = latent.height, lw = latent.width; lh > 0 && lw > 0; lh = (lh + 1) / 2, lw = (lw + 1) / 2) {
      if (lh * lw == output.dim(1)) return std::pair{lh, lw};
      if (lh == 1 && lw == 1) break;
    }
  return std::nullopt;
}

bool level_fully_covered(const LatentMask& latent, std::int64_t h, std::int64_t w) {
  try {
    const auto mask = level_mask(latent, h, w);
    return std::all_of(mask.begin(), mask.end(), [](float v) { return v != 0.0f; });
  } catch (const Error&) {
    return false;  // not a level of this mask: read it, to be safe
  }
}

bool read_by_edit(const DeviceTensor& output, const LatentMask& latent) {
  const auto level = output_level(output, latent);
  return !level || !level_fully_covered(latent, level->first, level->second);
}

bool CachePrefetch::read_by_edit(const DeviceTensor& output, SparseLevels* levels) {
  if (!levels) return true;
  if (covered_for_ != levels) {
    fully_covered_.clear();
    covered_for_ = levels;
  }
  const auto level = output_level(output, levels->latent());
  if (!level) return true;
  auto it = fully_covered_.find(*level);
  if (it == fully_covered_.end())
    it = fully_covered_.emplace(*level, level_fully_covered(levels->latent(), level->first, level->second)).first;
  return !it->second;
}

void CachePrefetch::prefetch(std::size_t i, SparseLevels* levels) {
  if (i >= steps_.size()) return;
  Slot& slot = slots_[i % slots_.size()];
  if (slot.step == i && (slot.levels == nullptr || slot.levels == levels)) return;  // queued already
  slot.step = i;
  slot.levels = levels;
  slot.record = steps_[i];  // handles: the device tensors stay where they are
  slot.staged = false;
  slot.fence = {};

  // Where each host tensor goes in the staging buffer: neighbours in host memory keep their distance.
  const auto all = tensors_of(slot.record);
  const std::size_t stats_count = 2 * slot.record.norm_stats.size();
  const std::size_t outputs_end = stats_count + slot.record.outputs.size();  // then probabilities, not read here
  std::map<MemoryKey, std::size_t> offset_of;
  std::vector<std::pair<DeviceTensor*, std::size_t>> placed;
  std::size_t cursor = 0, previous_end = 0;
  const DeviceBuffer* previous = nullptr;
  for (std::size_t k = 0; k < all.size(); ++k) {
    const DeviceTensor& t = *all[k];
    if (t.empty() || !t.host_resident() || t.nbytes() == 0 || k >= outputs_end) continue;
    if (k >= stats_count && !read_by_edit(t, levels)) {
      stats_.bytes_not_read += t.nbytes();
      continue;
    }
    const auto key = key_of(t);
    if (const auto it = offset_of.find(key); it != offset_of.end()) {
      placed.emplace_back(all[k], it->second);
      continue;
    }
    const bool follows = t.buffer() == previous && t.offset() >= previous_end && t.offset() - previous_end <= kMaxGap;
    const std::size_t at = follows ? cursor + (t.offset() - previous_end) : align_up(cursor);
    offset_of.emplace(key, at);
    placed.emplace_back(all[k], at);
    cursor = at + t.nbytes();
    previous = t.buffer();
    previous_end = t.offset() + t.nbytes();
  }
  if (placed.empty()) return;  // on the device: read in place

  if (slot.buffer.empty() || slot.buffer.nbytes() < cursor)  // the first step, then reused
    slot.buffer = b_.allocate(DType::u8, {static_cast<std::int64_t>(align_up(cursor))});
  std::vector<Backend::TensorCopy> copies;
  std::map<MemoryKey, bool> queued;
  for (auto& [target, at] : placed) {
    auto staged = slot.buffer.view(at, target->dtype(), target->shape());
    if (queued.emplace(key_of(*target), true).second) {
      copies.push_back({*target, staged});
      stats_.bytes_staged += target->nbytes();
    }
    *target = std::move(staged);
  }
  slot.fence = b_.copy_async(copies);
  slot.staged = true;
  ++stats_.steps_staged;
}

void CachePrefetch::prefetch_ahead(std::size_t i) {
  for (std::size_t j = i; j < i + slots_.size(); ++j) prefetch(j);
}

void CachePrefetch::prefetch_attention(std::size_t i) {
  if (i >= steps_.size() || attention_.contains(i)) return;
  AttentionStage stage{steps_[i], {}};
  std::vector<Backend::TensorCopy> copies;
  for (auto& p : stage.record.cross_attention)
    if (p.host_resident() && p.nbytes() > 0) {
      auto staged = b_.allocate(p.dtype(), p.shape());
      copies.push_back({p, staged});
      stats_.bytes_staged += p.nbytes();
      p = std::move(staged);
    }
  stage.fence = b_.copy_async(copies);
  attention_.emplace(i, std::move(stage));
}

const LayerRecord& CachePrefetch::attention_source(std::size_t i) {
  if (i >= steps_.size()) throw Error(ErrorCode::invalid_argument, "the cached generation has no step " + std::to_string(i));
  prefetch_attention(i);
  const auto& stage = attention_.at(i);
  b_.wait(stage.fence);
  return stage.record;
}

const LayerRecord& CachePrefetch::acquire(std::size_t i, SparseLevels* levels) {
  if (i >= steps_.size()) throw Error(ErrorCode::invalid_argument, "the cached generation has no step " + std::to_string(i));
  prefetch(i, levels);  // nothing when it was prefetched during a step before
  Slot& slot = slots_[i % slots_.size()];
  b_.wait(slot.fence);
  // The buffer of step i + depth - 1 held step i - 1, whose ops are queued: the copy stream waits for
  // them first. The steps between were queued before.
  for (std::size_t j = i + 1; j < i + slots_.size(); ++j) prefetch(j, levels);
  return slot.staged ? slot.record : steps_[i];
}

}  // namespace fisedit
