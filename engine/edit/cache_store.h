#pragma once
// Where a generation's activation cache lives (docs/method.md section 2.3): device memory up to a
// budget, the rest in host-resident memory (pinned on CUDA), and brought back ahead of the step that
// reads it.
//
// Spill (recording). A generation or an edit hands each step's record to a CacheSpill once the step's
// ops are queued. The record stays on the device while it and the steps still to come fit the device
// budget; otherwise (some of) its device tensors are copied, on the backend's copy stream, into one
// block of host memory, and the record holds views of that block at once. The first steps, as many as
// an edit's default dense detection steps, spill whole: those steps read no record. Later steps spill
// only their share of what does not fit, the same for each step, so that every sparse step copies as
// little as possible and the copy hides behind the step before it. The device memory is freed when the
// copy is done; the step loop never waits for it.
//
// Prefetch (editing). A CachePrefetch stages a spilled step's host tensors into one of two device
// buffers, laid out as they lie in host memory so that neighbours travel as one copy, while the step
// before it computes; the step's ops wait for the copy on the device (an event), never on the host.
// Only what the step reads is copied: an output at a level the edit mask covers entirely is
// recomputed, not read (SparseStep), so it stays in host memory, and an op given it would throw; so do
// cross-attention probabilities, which only attention control reads, in detection steps.
//
// On the CPU backend, host-resident memory is ordinary memory and copies happen at once; the same
// code runs, so the CPU tests check the layout, the staging and what an edit keeps.
#include "backend/backend.h"
#include "edit/sparse_step.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <unordered_set>
#include <utility>
#include <vector>

namespace fisedit {

// Bytes of layer records by where they live.
struct CacheBytes {
  std::size_t device = 0, host = 0;
  std::size_t total() const { return device + host; }
};

// Counts the tensors of records, each piece of memory once: an edit's record shares its base's
// tensors where it took them unchanged, so a count per record would count those twice.
class CacheByteCounter {
public:
  // `delta_bases` false: an entry kept as a row delta adds its rows only, not the base's entry under
  // them (the base's memory, counted with the base): what is the record's own.
  void add(const LayerRecord& record, bool delta_bases = true);
  void add(std::span<const LayerRecord> records);
  CacheBytes bytes() const { return bytes_; }

private:
  void add(const DeviceTensor& t);
  std::unordered_set<const std::byte*> seen_;
  CacheBytes bytes_;
};

// Moves a record's device tensors into one new block of host-resident memory: the copy is queued on
// the copy stream behind the ops computing them, and the record holds views of the block from now on
// (host tensors it already had, shared with another record, stay as they are). `keep_on_device`: the
// first tensors (statistics, then outputs in call order) up to this many bytes stay where they are.
// Returns the bytes moved.
std::size_t spill_to_host(Backend& b, LayerRecord& record, std::size_t keep_on_device = 0);

// The level (h, w) of a recorded output of this shape under this latent mask, if any.
std::optional<std::pair<std::int64_t, std::int64_t>> output_level(const DeviceTensor& output, const LatentMask& latent);
// Whether the mask covers every position of the level of size h x w.
bool level_fully_covered(const LatentMask& latent, std::int64_t h, std::int64_t w);
// Whether an edit with this mask reads a recorded output: all but those at a level the mask covers
// entirely, which the edit recomputes (SparseStep); a shape that is no level of the mask is read.
bool read_by_edit(const DeviceTensor& output, const LatentMask& latent);

// The steps whose records spill whole before the others spill in part: an edit's default number of
// dense detection steps (default_detection_steps: one per 20 steps, at least one), which read no record.
int whole_spill_steps(int steps);

// The recording side: which steps of one generation (or edit) stay on the device.
class CacheSpill {
public:
  // `device_budget`: bytes of layer records the generation may keep in device memory (none: no limit,
  // nothing spills; 0: everything does). `steps`: how many records it will make.
  CacheSpill(Backend& b, std::optional<std::size_t> device_budget, int steps);

  // The next step's record, complete (its ops queued): kept on the device when its device bytes (of a
  // row-delta entry, its rows only), as many again for each step still to come, fit what is left of
  // the budget; else spilled to the host, whole among the first whole_spill_steps(), otherwise all but
  // an even share of what is left.
  void keep(LayerRecord& record);

  std::size_t device_bytes() const { return device_bytes_; }
  int spilled_steps() const { return spilled_steps_; }  // spilled in whole or in part

private:
  Backend& b_;
  std::optional<std::size_t> budget_;
  int steps_, whole_steps_, next_ = 0, spilled_steps_ = 0;
  std::size_t device_bytes_ = 0;
};

// The reading side: an edit's view of the base generation's records, host-resident steps staged into
// `depth` device buffers in turn (2: step t + 1 copied while step t computes), reused from step to step.
// A deeper pipeline lets the copy stream run further ahead, through the detection steps, which read no
// record, at the cost of one more step's worth of device memory per buffer.
class CachePrefetch {
public:
  static constexpr int kDefaultDepth = 2;
  // `steps` (the base generation's records) and the backend must outlive this object. depth >= 2.
  CachePrefetch(Backend& b, const std::vector<LayerRecord>& steps, int depth = kDefaultDepth);

  // Queues the copy of step i's host tensors that an edit with these levels reads (all of them
  // without levels, before the mask is known). Nothing when they are on the device or already queued.
  void prefetch(std::size_t i, SparseLevels* levels = nullptr);
  // Queues the prefetches of steps i, i + 1, ..., as many as there are buffers (all of them without
  // levels): what an edit does before its first sparse step.
  void prefetch_ahead(std::size_t i);
  // Step i's record as the step reads it: its device tensors, and staged copies of its host tensors
  // that the step's ops will wait for on the device. Queues the prefetch of the steps up to i + depth
  // - 1, to run while step i computes. Valid until step i + depth is acquired (its staging buffer is
  // then reused).
  const LayerRecord& acquire(std::size_t i, SparseLevels* levels);
  int depth() const { return static_cast<int>(slots_.size()); }

  // Attention control reads a detection step's cross-attention probabilities and nothing else of its
  // record: prefetch_attention(i) queues the copy of those alone (into memory of their own, a few MB
  // per layer), attention_source(i) is step i's record with them on the device, the computation
  // waiting for the copy on the device. Queue them before prefetch_ahead(), whose copies are larger.
  void prefetch_attention(std::size_t i);
  const LayerRecord& attention_source(std::size_t i);

  struct Stats {
    int steps_staged = 0;             // prefetches that copied something
    std::size_t bytes_staged = 0;     // copied to the device
    std::size_t bytes_not_read = 0;   // host bytes left out: outputs at levels the mask covers
  };
  const Stats& stats() const { return stats_; }

private:
  struct Slot {
    std::optional<std::size_t> step;
    SparseLevels* levels = nullptr;  // what the staging left out depends on them; null: nothing
    LayerRecord record;              // the step's record with staged tensors in place of host ones
    bool staged = false;             // false: the step is on the device, read it in place
    DeviceTensor buffer;             // U8 staging memory, grown to the largest step, then reused
    Backend::CopyFence fence;
  };
  // Whether an edit with these levels reads an output of this shape (not at a fully covered level).
  bool read_by_edit(const DeviceTensor& output, SparseLevels* levels);

  Backend& b_;
  const std::vector<LayerRecord>& steps_;
  std::vector<Slot> slots_;
  struct AttentionStage {
    LayerRecord record;
    Backend::CopyFence fence;
  };
  std::map<std::size_t, AttentionStage> attention_;
  std::map<std::pair<std::int64_t, std::int64_t>, bool> fully_covered_;
  const SparseLevels* covered_for_ = nullptr;
  Stats stats_;
};

}  // namespace fisedit
