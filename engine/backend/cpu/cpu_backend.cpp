// CPU memory: aligned host buffers, dtype conversion on upload and download.
#include "backend/cpu/cpu_backend.h"

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "core/half.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include <cblas.h>

namespace fisedit {
namespace {

// 64-byte alignment: a cache line and an AVX-512 vector, so rows start where SIMD loads are cheap.
constexpr std::align_val_t kAlignment{64};

class CpuBuffer final : public DeviceBuffer {
public:
  explicit CpuBuffer(std::size_t size, bool host_resident = false,
                     std::shared_ptr<CpuBackend::Accounting> accounting = nullptr)
      : data_(static_cast<std::byte*>(::operator new(size ? size : 1, kAlignment, std::nothrow))), size_(size),
        host_resident_(host_resident), accounting_(std::move(accounting)) {
    if (!data_) {
      if (accounting_) accounting_->in_use -= size_;
      throw Error(ErrorCode::out_of_memory,
                  "out of memory: could not allocate " + std::to_string(size >> 20) + " MiB of host memory");
    }
  }
  ~CpuBuffer() override {
    ::operator delete(data_, kAlignment);
    if (accounting_) accounting_->in_use -= size_;
  }
  CpuBuffer(const CpuBuffer&) = delete;
  CpuBuffer& operator=(const CpuBuffer&) = delete;

  std::byte* data() override { return data_; }
  std::size_t size() const override { return size_; }
  bool host_resident() const override { return host_resident_; }

private:
  std::byte* data_;
  std::size_t size_;
  bool host_resident_;
  std::shared_ptr<CpuBackend::Accounting> accounting_;  // null for host-resident buffers (not counted)
};

std::string mebibytes(std::size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / double(1 << 20));
  return text;
}

// Converts n elements of `Src` (possibly unaligned, as in a mapped file) to float, in parallel blocks.
template <class Src, class Convert>
void convert_to_f32(cpu::ThreadPool& pool, const std::byte* src, std::int64_t n, float* dst, Convert convert) {
  constexpr std::int64_t kBlock = 1 << 14;
  cpu::parallel_for(pool, (n + kBlock - 1) / kBlock, kBlock, [&](std::int64_t block) {
    const std::int64_t end = std::min(n, (block + 1) * kBlock);
    for (std::int64_t i = block * kBlock; i < end; ++i) {
      Src v;
      std::memcpy(&v, src + i * static_cast<std::int64_t>(sizeof(Src)), sizeof(Src));
      dst[i] = convert(v);
    }
  });
}

}  // namespace

CpuBackend::CpuBackend(int threads) : pool_(threads) {
  // One pool of threads: OpenBLAS's own would compete with it for the same cores.
  openblas_set_num_threads(1);
  if (const char* limit = std::getenv("FISEDIT_DEVICE_MEMORY_LIMIT"); limit && *limit) {
    char* end = nullptr;
    const unsigned long long bytes = std::strtoull(limit, &end, 10);
    if (end && *end == '\0') set_memory_limit(static_cast<std::size_t>(bytes));
  }
}

std::optional<std::size_t> CpuBackend::memory_limit() const {
  const std::size_t limit = limit_.load();
  return limit == kNoLimit ? std::nullopt : std::optional<std::size_t>(limit);
}

std::string CpuBackend::name() const {
  const int threads = pool_.size();
  return "CPU (float32, " + std::to_string(threads) + (threads == 1 ? " thread)" : " threads)");
}

DeviceTensor CpuBackend::allocate(DType dtype, Shape shape) {
  for (auto d : shape)
    if (d < 0) throw Error(ErrorCode::invalid_argument, "allocate: negative dimension in " + shape_to_string(shape));
  const auto bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  // Counted before the memory is taken, so that a limit holds however the buffers are freed.
  const std::size_t before = accounting_->in_use.fetch_add(bytes);
  const std::size_t limit = limit_.load();
  if (limit != kNoLimit && before + bytes > limit) {
    accounting_->in_use -= bytes;
    throw Error(ErrorCode::out_of_memory,
                "out of device memory: could not allocate " + mebibytes(bytes) + " for " + shape_to_string(shape) + " (" +
                    mebibytes(before) + " of the " + mebibytes(limit) +
                    " device memory limit in use); use a smaller image size, or keep fewer cached steps "
                    "(a lower activation cache budget)");
  }
  for (std::size_t peak = peak_.load(); before + bytes > peak && !peak_.compare_exchange_weak(peak, before + bytes);) {
  }
  return DeviceTensor(std::make_shared<CpuBuffer>(bytes, false, accounting_), 0, dtype, std::move(shape));
}

// The same memory as allocate()'s, marked host-resident: ops refuse it and copies move it, exactly as
// on a GPU, so the CPU tests run the spill and prefetch path the GPU runs.
DeviceTensor CpuBackend::allocate_host(DType dtype, Shape shape) {
  for (auto d : shape)
    if (d < 0) throw Error(ErrorCode::invalid_argument, "allocate_host: negative dimension in " + shape_to_string(shape));
  const auto bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  return DeviceTensor(std::make_shared<CpuBuffer>(bytes, true), 0, dtype, std::move(shape));
}

void CpuBackend::upload_impl(const Tensor& host, DeviceTensor& out) {
  const std::int64_t n = host.numel();
  const std::byte* src = host.data();
  auto cast = [](auto v) { return static_cast<float>(v); };
  switch (host.dtype()) {
    case DType::f32:  // an empty tensor has no data pointer: memcpy(dst, nullptr, 0) is undefined (UBSan)
      if (host.nbytes()) std::memcpy(out.data(), src, host.nbytes());
      return;
    case DType::f64: convert_to_f32<double>(pool_, src, n, out.data_as<float>(), cast); return;
    case DType::f16: convert_to_f32<std::uint16_t>(pool_, src, n, out.data_as<float>(), half_to_float); return;
    case DType::bf16: convert_to_f32<std::uint16_t>(pool_, src, n, out.data_as<float>(), bf16_to_float); return;
    default: break;
  }
  const auto values = host.to_i64();
  auto* dst = out.data_as<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const auto v = values[static_cast<std::size_t>(i)];
    if (v < std::numeric_limits<std::int32_t>::min() || v > std::numeric_limits<std::int32_t>::max())
      throw Error(ErrorCode::invalid_argument, "upload: integer value " + std::to_string(v) + " does not fit in I32");
    dst[i] = static_cast<std::int32_t>(v);
  }
}

void CpuBackend::download_impl(const DeviceTensor& t, std::span<float> out) {
  if (t.dtype() == DType::f32) {
    std::memcpy(out.data(), t.data(), out.size_bytes());
    return;
  }
  if (t.dtype() != DType::i32)
    throw Error(ErrorCode::invalid_argument,
                "download: unexpected device dtype " + std::string(dtype_name(t.dtype())));
  const auto* src = t.data_as<const std::int32_t>();
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(src[i]);
}

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace fisedit
