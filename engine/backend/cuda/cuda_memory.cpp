// The caching device allocator: driver segments cut into blocks by best fit (backend/block_arena.h).
#include "backend/cuda/cuda_memory.h"

#include "backend/cuda/cuda_check.h"

#include <chrono>
#include <cstdio>
#include <limits>
#include <string>

namespace fisedit::cuda {
namespace {

constexpr std::size_t kSmallLimit = std::size_t{1} << 20;  // up to this: from slabs, in 512-byte steps
constexpr std::size_t kSmallGranule = 512;
constexpr std::size_t kSlab = std::size_t{2} << 20;
// Large blocks: in 128 KiB steps; an excess under 1 MiB stays with the block instead of splitting it.
constexpr std::size_t kLargeGranule = std::size_t{128} << 10;
constexpr std::size_t kLargeSplit = std::size_t{1} << 20;
// Driver segments: requests up to 10 MiB share 20 MiB segments (a handful of driver calls for the many
// mid-sized tensors of a step); larger ones get a segment of their own, in 2 MiB steps.
constexpr std::size_t kSharedLimit = std::size_t{10} << 20;
constexpr std::size_t kSharedSegment = std::size_t{20} << 20;
constexpr std::size_t kSegmentGranule = std::size_t{2} << 20;
// No request this large can succeed; refusing it early keeps the rounding below from overflowing.
constexpr std::size_t kMaxRequest = std::numeric_limits<std::size_t>::max() / 4;

std::size_t round_up(std::size_t bytes, std::size_t granule) { return (bytes + granule - 1) / granule * granule; }

std::string format_bytes(std::size_t bytes) {
  char text[64];
  const double mib = static_cast<double>(bytes) / double(1 << 20);
  if (mib >= 1024.0)
    std::snprintf(text, sizeof text, "%.1f GiB", mib / 1024.0);
  else
    std::snprintf(text, sizeof text, "%.1f MiB", mib);
  return text;
}

[[noreturn]] void throw_out_of_memory(std::size_t bytes, MemoryPool::Kind kind) {
  if (kind == MemoryPool::Kind::pinned_host)
    throw Error(ErrorCode::out_of_memory, "out of pinned host memory: could not allocate " + format_bytes(bytes) +
                                              " for the activation cache; lower the cache budget or close other programs");
  std::size_t free = 0, total = 0;
  const bool known = cudaMemGetInfo(&free, &total) == cudaSuccess;
  cudaGetLastError();  // a failed query must not leave an error behind for the next call
  throw Error(ErrorCode::out_of_memory,
              "out of GPU memory: could not allocate " + format_bytes(bytes) +
                  (known ? " (" + format_bytes(free) + " free of " + format_bytes(total) + ")" : std::string()) +
                  "; use a smaller image size or batch, or close other programs using the GPU");
}

}  // namespace

// A block on loan from the pool; destroying it returns the block (the pool outlives its buffers).
class PooledBuffer final : public DeviceBuffer {
public:
  PooledBuffer(std::shared_ptr<MemoryPool> pool, std::byte* ptr, std::size_t size, bool host)
      : pool_(std::move(pool)), ptr_(ptr), size_(size), host_(host) {}
  ~PooledBuffer() override { pool_->give_back(ptr_, size_); }
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;

  std::byte* data() override { return ptr_; }
  std::size_t size() const override { return size_; }
  bool host_resident() const override { return host_; }

private:
  std::shared_ptr<MemoryPool> pool_;
  std::byte* ptr_;
  std::size_t size_;
  bool host_;
};

namespace {

cudaError_t raw_allocate(MemoryPool::Kind kind, void** ptr, std::size_t size) {
  // Portable: pinned for every context, not only the current one.
  return kind == MemoryPool::Kind::device ? cudaMalloc(ptr, size) : cudaHostAlloc(ptr, size, cudaHostAllocPortable);
}

void raw_free(MemoryPool::Kind kind, void* ptr) {
  if (kind == MemoryPool::Kind::device)
    cudaFree(ptr);
  else
    cudaFreeHost(ptr);
}

}  // namespace

MemoryPool::MemoryPool(int device, Kind kind)
    : device_(device), kind_(kind), large_(kLargeGranule, kLargeSplit), small_(kSmallGranule, kSmallGranule) {}

MemoryPool::~MemoryPool() {
  // Errors are ignored: at teardown the context may already be gone.
  cudaSetDevice(device_);
  for (const BlockArena::Block& segment : large_.segments()) raw_free(kind_, segment.ptr);
  cudaGetLastError();
}

void MemoryPool::free_segments(const std::vector<BlockArena::Block>& segments) {
  for (const BlockArena::Block& segment : segments) raw_free(kind_, segment.ptr);
  cudaGetLastError();  // a failure here can only come from an earlier asynchronous error, which the next checked call reports
}

BlockArena::Block MemoryPool::take_large(std::size_t bytes) {
  if (auto block = large_.take(bytes)) return *block;
  FISEDIT_CUDA_CHECK(cudaSetDevice(device_));
  const auto started = std::chrono::steady_clock::now();
  const std::size_t wanted = large_.round(bytes);
  std::size_t size = wanted <= kSharedLimit ? kSharedSegment : round_up(wanted, kSegmentGranule);
  void* raw = nullptr;
  cudaError_t status = raw_allocate(kind_, &raw, size);
  if (status == cudaErrorMemoryAllocation) {
    // The cache may hold the memory this request needs, in segments that are wholly free; and the
    // request alone may fit where a shared segment does not. cudaFree waits for the device, so blocks
    // still read by queued work are safe to free.
    cudaGetLastError();
    free_segments(large_.remove_free_segments());
    ++cache_flushes_;
    size = round_up(wanted, kSegmentGranule);
    status = raw_allocate(kind_, &raw, size);
  }
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw_out_of_memory(bytes, kind_);
  }
  FISEDIT_CUDA_CHECK(status);
  ++driver_allocations_;
  driver_allocation_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  large_.add_segment(static_cast<std::byte*>(raw), size);
  return *large_.take(bytes);
}

std::shared_ptr<DeviceBuffer> MemoryPool::allocate(std::size_t bytes) {
  if (bytes > kMaxRequest) throw_out_of_memory(bytes, kind_);
  BlockArena::Block block;
  {
    const std::lock_guard lock(mutex_);
    if (bytes <= kSmallLimit) {
      auto small = small_.take(bytes);
      if (!small) {
        const BlockArena::Block slab = take_large(kSlab);
        small_.add_segment(slab.ptr, slab.size);
        small = small_.take(bytes);
      }
      block = *small;
    } else {
      block = take_large(bytes);
    }
    in_use_ += block.size;
    if (in_use_ > peak_) peak_ = in_use_;
  }
  std::shared_ptr<DeviceBuffer> buffer;
  try {
    buffer = std::make_shared<PooledBuffer>(shared_from_this(), block.ptr, block.size, kind_ == Kind::pinned_host);
  } catch (...) {
    give_back(block.ptr, block.size);
    throw;
  }
  const std::lock_guard lock(mutex_);
  if (hold_) hold_->allocated_.push_back(buffer);
  return buffer;
}

// A small block (never above kSmallLimit) goes back to its slab, and a slab wholly free to the large
// blocks at once, where it merges with its free neighbours; a large block (always above) to them.
void MemoryPool::return_block(std::byte* ptr, std::size_t size) {
  if (size <= kSmallLimit) {
    const auto slab = small_.give_back(ptr);
    if (!slab) return;
    small_.remove_segment(slab->ptr);
    ptr = slab->ptr;
  }
  large_.give_back(ptr);
}

void MemoryPool::give_back(std::byte* ptr, std::size_t size) {
  const std::lock_guard lock(mutex_);
  if (hold_) {  // still in use by recorded work: returned when the hold ends
    hold_->given_back_.emplace_back(ptr, size);
    return;
  }
  in_use_ -= size;
  return_block(ptr, size);
}

std::shared_ptr<MemoryPool::Hold> MemoryPool::begin_hold() {
  auto hold = std::shared_ptr<Hold>(new Hold(shared_from_this()));
  const std::lock_guard lock(mutex_);
  if (hold_) throw Error(ErrorCode::invalid_argument, "a recording of device work began inside another");
  hold_ = hold.get();
  return hold;
}

void MemoryPool::end_hold() {
  const std::lock_guard lock(mutex_);
  hold_ = nullptr;
}

MemoryPool::Hold::~Hold() {
  allocated_.clear();  // blocks nobody else holds go back (to a newer hold, if one is active)
  for (const auto& [ptr, size] : given_back_) pool_->give_back(ptr, size);
}

std::size_t MemoryPool::Hold::bytes() const {
  std::size_t n = 0;
  for (const auto& b : allocated_) n += b->size();
  for (const auto& [ptr, size] : given_back_) n += size;
  return n;
}

std::size_t MemoryPool::bytes_in_use() const {
  const std::lock_guard lock(mutex_);
  return in_use_;
}

std::size_t MemoryPool::bytes_cached() const {
  const std::lock_guard lock(mutex_);
  return large_.free_bytes() + small_.free_bytes();
}

std::size_t MemoryPool::bytes_reserved() const {
  const std::lock_guard lock(mutex_);
  return large_.segment_bytes();
}

std::size_t MemoryPool::peak_bytes_in_use() const {
  const std::lock_guard lock(mutex_);
  return peak_;
}

double MemoryPool::driver_allocation_ms() const {
  const std::lock_guard lock(mutex_);
  return driver_allocation_ms_;
}

std::size_t MemoryPool::driver_allocations() const {
  const std::lock_guard lock(mutex_);
  return driver_allocations_;
}

std::size_t MemoryPool::cache_flushes() const {
  const std::lock_guard lock(mutex_);
  return cache_flushes_;
}

void MemoryPool::reset_peak() {
  const std::lock_guard lock(mutex_);
  peak_ = in_use_;
}

void MemoryPool::release_cached() {
  const std::lock_guard lock(mutex_);
  FISEDIT_CUDA_CHECK(cudaSetDevice(device_));
  free_segments(large_.remove_free_segments());
}

}  // namespace fisedit::cuda
