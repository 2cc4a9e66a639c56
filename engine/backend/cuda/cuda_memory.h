#pragma once
// A caching device allocator (like ggml's cuda pool and PyTorch's caching allocator): freed blocks go
// back to per-size free lists instead of cudaFree, so the per-op allocations of a denoising step cost
// no driver calls after the first step. All work runs on one stream, so a block freed by the host can
// be reused at once: stream order puts the new user's kernels after the old user's.
#include "backend/backend.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace fisedit::cuda {

class MemoryPool : public std::enable_shared_from_this<MemoryPool> {
public:
  explicit MemoryPool(int device);
  ~MemoryPool();  // frees every cached block (buffers still alive keep the pool alive)
  MemoryPool(const MemoryPool&) = delete;
  MemoryPool& operator=(const MemoryPool&) = delete;

  // At least `bytes` of device memory, 256-byte aligned. On cudaMalloc failure the cache is freed and
  // the allocation retried once; then Error(out_of_memory) says how much was asked and how much is free.
  std::shared_ptr<DeviceBuffer> allocate(std::size_t bytes);

  std::size_t bytes_in_use() const;  // held by live buffers
  std::size_t bytes_cached() const;  // held in free lists
  std::size_t peak_bytes_in_use() const;
  void reset_peak();
  void release_cached();  // cudaFree every cached block
  // New blocks come from the driver's stream-ordered allocator on `stream` (cudaMallocAsync): a step
  // that keeps its outputs (a cached generation's records) asks for hundreds of new blocks, and
  // cudaMalloc cost the host tens of microseconds each. Unset (or FISEDIT_POOL=malloc): cudaMalloc.
  // Call before the first allocation; a null stream afterwards (the stream is going away) moves the
  // stream-ordered allocations to the legacy stream.
  void set_stream(cudaStream_t stream);

private:
  friend class PooledBuffer;
  void give_back(std::byte* ptr, std::size_t size);

  // Returns blocks to the driver (the device idle first): cudaFree, or cudaFreeAsync for blocks of the
  // stream-ordered allocator.
  void free_blocks(const std::multimap<std::size_t, std::byte*>& blocks);

  int device_;
  bool async_ = false;             // blocks come from cudaMallocAsync (on stream_; null: the legacy stream)
  cudaStream_t stream_ = nullptr;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, std::byte*> free_;  // size class -> blocks
  std::size_t in_use_ = 0, cached_ = 0, peak_ = 0;
};

}  // namespace fisedit::cuda
