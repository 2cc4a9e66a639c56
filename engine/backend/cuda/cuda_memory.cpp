// The caching device allocator. Sizes are rounded to classes so that the slightly different sizes of
// one layer's activations across steps (and across layers of one width) land on the same blocks.
#include "backend/cuda/cuda_memory.h"

#include "backend/cuda/cuda_check.h"

#include <chrono>
#include <cstdio>
#include <limits>
#include <string>

namespace fisedit::cuda {
namespace {

constexpr std::size_t kSmallLimit = std::size_t{1} << 20;  // below: 512-byte classes
constexpr std::size_t kSmallGranule = 512;
constexpr std::size_t kLargeGranule = std::size_t{2} << 20;  // above: 2 MiB classes
// No request this large can succeed; refusing it early keeps the rounding below from overflowing.
constexpr std::size_t kMaxRequest = std::numeric_limits<std::size_t>::max() / 4;

std::size_t size_class(std::size_t bytes) {
  const std::size_t granule = bytes < kSmallLimit ? kSmallGranule : kLargeGranule;
  const std::size_t rounded = (bytes + granule - 1) / granule * granule;
  return rounded ? rounded : granule;  // a zero-element tensor still gets a distinct, valid address
}

// A cached block may serve a request up to 1/8 smaller than itself: reuse across nearby sizes
// without letting small tensors pin large blocks.
bool block_fits(std::size_t block, std::size_t wanted) { return block <= wanted + wanted / 8; }

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

MemoryPool::MemoryPool(int device, Kind kind) : device_(device), kind_(kind) {}

MemoryPool::~MemoryPool() {
  // Errors are ignored: at teardown the context may already be gone.
  cudaSetDevice(device_);
  for (const auto& [size, ptr] : free_) raw_free(kind_, ptr);
  cudaGetLastError();
}

std::shared_ptr<DeviceBuffer> MemoryPool::allocate(std::size_t bytes) {
  if (bytes > kMaxRequest) throw_out_of_memory(bytes, kind_);
  const std::size_t wanted = size_class(bytes);
  std::byte* ptr = nullptr;
  std::size_t size = wanted;
  {
    const std::lock_guard lock(mutex_);
    if (auto it = free_.lower_bound(wanted); it != free_.end() && block_fits(it->first, wanted)) {
      size = it->first;
      ptr = it->second;
      free_.erase(it);
      cached_ -= size;
    } else {
      FISEDIT_CUDA_CHECK(cudaSetDevice(device_));
      const auto started = std::chrono::steady_clock::now();
      void* raw = nullptr;
      cudaError_t status = raw_allocate(kind_, &raw, size);
      if (status == cudaErrorMemoryAllocation) {
        // The cache may hold the memory this request needs, in blocks of other sizes.
        cudaGetLastError();
        for (const auto& [block, cached_ptr] : free_) raw_free(kind_, cached_ptr);
        free_.clear();
        cached_ = 0;
        ++cache_flushes_;
        status = raw_allocate(kind_, &raw, size);
      }
      if (status == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        throw_out_of_memory(bytes, kind_);
      }
      FISEDIT_CUDA_CHECK(status);
      ++driver_allocations_;
      driver_allocation_ms_ += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
      ptr = static_cast<std::byte*>(raw);
    }
    in_use_ += size;
    if (in_use_ > peak_) peak_ = in_use_;
  }
  std::shared_ptr<DeviceBuffer> buffer;
  try {
    buffer = std::make_shared<PooledBuffer>(shared_from_this(), ptr, size, kind_ == Kind::pinned_host);
  } catch (...) {
    give_back(ptr, size);
    throw;
  }
  const std::lock_guard lock(mutex_);
  if (hold_) hold_->allocated_.push_back(buffer);
  return buffer;
}

void MemoryPool::give_back(std::byte* ptr, std::size_t size) {
  const std::lock_guard lock(mutex_);
  if (hold_) {  // still in use by recorded work: returned when the hold ends
    hold_->given_back_.emplace_back(ptr, size);
    return;
  }
  in_use_ -= size;
  cached_ += size;
  free_.emplace(size, ptr);
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
  return cached_;
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
  // cudaFree (and cudaFreeHost) wait for the device, so blocks still read by queued work are safe to free. A failure
  // here can only come from an earlier asynchronous error, which the next checked call reports.
  for (const auto& [size, ptr] : free_) raw_free(kind_, ptr);
  cudaGetLastError();
  free_.clear();
  cached_ = 0;
}

}  // namespace fisedit::cuda
