#pragma once
// A caching device allocator (like PyTorch's caching allocator): memory asked of the driver is kept in
// segments that are cut into blocks and merged back (backend/block_arena.h), so the per-op allocations
// of a denoising step cost no driver calls after the first step, and the small tensors of a sparse edit
// are cut from the large blocks a generation freed. Requests up to 1 MiB come from 2 MiB slabs cut
// from the large blocks, so a long-lived small tensor pins at most its slab, never a whole large block. Ops run on one stream, so a block freed by the host can be
// reused at once: stream order puts the new user's kernels after the old user's. The one other stream,
// the copy stream, holds the buffers of its copies until they are done (cuda_copy.cpp), so no block it
// still reads or writes comes back here early.
//
// The same pool, made for pinned host memory (cudaHostAlloc), holds the activation cache's spilled
// steps: pinning pages costs milliseconds per hundred megabytes, which a spill per step must not pay
// again in every generation.
#include "backend/backend.h"
#include "backend/block_arena.h"

#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace fisedit::cuda {

class MemoryPool : public std::enable_shared_from_this<MemoryPool> {
public:
  enum class Kind { device, pinned_host };
  explicit MemoryPool(int device, Kind kind = Kind::device);
  ~MemoryPool();  // frees every cached block (buffers still alive keep the pool alive)
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // At least `bytes` of device (or pinned host) memory, 256-byte aligned. On cudaMalloc failure the cache is freed and
  // the allocation retried once; then Error(out_of_memory) says how much was asked and how much is free.
  std::shared_ptr<DeviceBuffer> allocate(std::size_t bytes);

  std::size_t bytes_in_use() const;    // held by live buffers
  std::size_t bytes_cached() const;    // free blocks, ready for the next request
  std::size_t bytes_reserved() const;  // asked of the driver and not given back: in use + cached
  std::size_t peak_bytes_in_use() const;
  void reset_peak();
  // Blocks asked of the driver (cudaMalloc / cudaHostAlloc) since the pool was made, and how many
  // times an allocation that failed emptied the cache to retry: what an op pays beyond the free lists.
  std::size_t driver_allocations() const;
  double driver_allocation_ms() const;  // the host's time in those driver calls
  std::size_t cache_flushes() const;
  void release_cached();  // gives every wholly free segment back to the driver

  // What a recording of queued work (CUDA graph) keeps: from begin_hold() to end_hold() every block
  // allocated is also held by the Hold, and every block given back goes to the Hold instead of the
  // free lists, so no memory the recorded kernels touch serves anyone else while the recording lives.
  // Destroying the Hold returns its blocks. One hold at a time.
  class Hold {
  public:
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    std::size_t bytes() const;

  private:
    friend class MemoryPool;
    explicit Hold(std::shared_ptr<MemoryPool> pool) : pool_(std::move(pool)) {}
    std::shared_ptr<MemoryPool> pool_;
    std::vector<std::shared_ptr<DeviceBuffer>> allocated_;
    std::vector<std::pair<std::byte*, std::size_t>> given_back_;  // block, size
  };
  std::shared_ptr<Hold> begin_hold();
  void end_hold();

private:
  friend class PooledBuffer;
  void give_back(std::byte* ptr, std::size_t size);
  // The callers hold mutex_.
  BlockArena::Block take_large(std::size_t bytes);
  void return_block(std::byte* ptr, std::size_t size);
  void free_segments(const std::vector<BlockArena::Block>& segments);

  int device_;
  Kind kind_;
  mutable std::mutex mutex_;
  BlockArena large_;  // segments: driver allocations
  BlockArena small_;  // segments: slabs taken from large_ (given back as soon as they are wholly free)
  std::size_t in_use_ = 0, peak_ = 0;
  std::size_t driver_allocations_ = 0, cache_flushes_ = 0;
  double driver_allocation_ms_ = 0;
  Hold* hold_ = nullptr;  // guarded by mutex_
};

}  // namespace fisedit::cuda
