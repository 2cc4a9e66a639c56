// The CUDA backend's device, stream, library handles and memory: construction, allocation through
// the pool, and host <-> device transfers with dtype conversion.
#include "backend/cuda/cuda_state.h"

#include "convert.cuh"
#include "core/error.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

namespace fisedit {
namespace {

// fisedit's kernels are sm_90 machine code plus compute_80 PTX (cmake/FisEditCuda.cmake): older GPUs
// could not load them.
constexpr int kMinComputeMajor = 8;

std::string compute_capability(const cudaDeviceProp& p) {
  return std::to_string(p.major) + "." + std::to_string(p.minor);
}

}  // namespace

bool CudaBackend::device_available(std::string* why) {
  const auto fail = [why](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return fail(std::string("CUDA is not usable: ") + cudaGetErrorString(status));
  }
  if (count == 0) return fail("no CUDA device found");
  // Device 0 is the one CudaBackend() opens.
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) != cudaSuccess) {
    cudaGetLastError();
    return fail("cannot query CUDA device 0");
  }
  if (props.major < kMinComputeMajor)
    return fail(std::string(props.name) + " has compute capability " + compute_capability(props) +
                "; fisedit needs 8.0 or newer");
  return true;
}

CudaBackend::CudaBackend(int device) : s_(std::make_unique<State>()) {
  int count = 0;
  if (const cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess) {
    cudaGetLastError();
    throw Error(ErrorCode::device, std::string("CUDA is not usable: ") + cudaGetErrorString(status));
  }
  if (device < 0 || device >= count)
    throw Error(ErrorCode::device,
                "no CUDA device " + std::to_string(device) + " (" + std::to_string(count) + " present)");
  s_->device = device;
  FISEDIT_CUDA_CHECK(cudaSetDevice(device));
  FISEDIT_CUDA_CHECK(cudaGetDeviceProperties(&s_->props, device));
  if (s_->props.major < kMinComputeMajor)
    throw Error(ErrorCode::device, std::string(s_->props.name) + " has compute capability " +
                                       compute_capability(s_->props) + "; fisedit needs 8.0 or newer");
  s_->pool = std::make_shared<cuda::MemoryPool>(device);
  // Non-blocking: the legacy default stream (used by libraries that take no stream) must not
  // serialise against ours.
  s_->stream = cuda::make_stream();
  s_->pinned_pool = std::make_shared<cuda::MemoryPool>(device, cuda::MemoryPool::Kind::pinned_host);
  s_->copy_stream = cuda::make_stream();
  s_->spill_stream = cuda::make_stream();
  s_->compute_mark = cuda::make_event();

  // cuBLASLt takes the stream on each matmul call; cuDNN binds it to the handle.
  cublasLtHandle_t lt{};
  FISEDIT_CUBLAS_CHECK(cublasLtCreate(&lt));
  s_->cublas_lt = cuda::CublasLtHandle(lt);
  cublasHandle_t blas{};
  FISEDIT_CUBLAS_CHECK(cublasCreate(&blas));
  s_->cublas = cuda::CublasHandle(blas);
  FISEDIT_CUBLAS_CHECK(cublasSetStream(blas, s_->stream.get()));
  cudnnHandle_t dnn{};
  FISEDIT_CUDNN_CHECK(cudnnCreate(&dnn));
  s_->cudnn = cuda::CudnnHandle(dnn);
  FISEDIT_CUDNN_CHECK(cudnnSetStream(dnn, s_->stream.get()));
}

CudaBackend::~CudaBackend() {
  // Queued kernels may still use pooled blocks and handles; errors are ignored (destructors never
  // throw, and a failed device cannot be helped here).
  if (s_ && s_->stream) cudaStreamSynchronize(s_->stream.get());
  if (s_ && s_->copy_stream) cudaStreamSynchronize(s_->copy_stream.get());
  if (s_ && s_->spill_stream) cudaStreamSynchronize(s_->spill_stream.get());
  if (s_) s_->copies_in_flight.clear();  // their buffers go back to the pools, which outlive them
  cudaGetLastError();
}

std::string CudaBackend::name() const { return std::string(s_->props.name) + " (CUDA, float16)"; }

// The compute stream only: the copy stream runs ahead (a prefetch) or behind (a spill) of it by design,
// and the step loop's download must not wait for either. Copies that are done give their buffers back.
void CudaBackend::synchronize() {
  FISEDIT_CUDA_CHECK(cudaStreamSynchronize(s_->stream.get()));
  retire_copies();
}

cudaStream_t CudaBackend::stream() const { return s_->stream.get(); }

cuda::MemoryPool& CudaBackend::memory_pool() const { return *s_->pool; }

// Live buffers only: the pool's free lists are reusable at once, so they are not memory the session
// is using (they go back to the driver when an allocation would otherwise fail).
std::optional<Backend::DeviceMemory> CudaBackend::device_memory() const {
  DeviceMemory m;
  m.in_use = s_->pool->bytes_in_use();
  m.peak = s_->pool->peak_bytes_in_use();
  m.driver_allocations = s_->pool->driver_allocations();
  m.driver_allocation_ms = s_->pool->driver_allocation_ms();
  m.cache_flushes = s_->pool->cache_flushes();
  m.total = s_->props.totalGlobalMem;
  std::size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) == cudaSuccess) {
    m.free = free;
    m.total = total;
  }
  return m;
}

void CudaBackend::reset_device_peak() {
  synchronize();
  s_->pool->reset_peak();
}

DeviceTensor CudaBackend::allocate(DType dtype, Shape shape) {
  std::size_t elements = 1;
  for (auto d : shape) {
    if (d < 0) throw Error(ErrorCode::invalid_argument, "allocate: negative dimension in " + shape_to_string(shape));
    if (d > 0 && elements > std::numeric_limits<std::size_t>::max() / 16 / static_cast<std::size_t>(d))
      throw Error(ErrorCode::out_of_memory, "allocate: " + shape_to_string(shape) + " is too large for any GPU");
    elements *= static_cast<std::size_t>(d);
  }
  auto buffer = s_->pool->allocate(elements * dtype_size(dtype));
  return DeviceTensor(std::move(buffer), 0, dtype, std::move(shape));
}

// Float tensors are copied in their own dtype and converted on the device (weights are mostly F16,
// BF16 or F32: no host pass over gigabytes); F64 and integers are converted on the host first.
// Returns once the host memory has been read, so the caller may free it.
void CudaBackend::upload_impl(const Tensor& host, DeviceTensor& out) {
  const auto n = static_cast<std::size_t>(host.numel());
  if (n == 0) return;
  const cudaStream_t stream = s_->stream.get();
  const auto copy_in = [&](void* dst, const void* src, std::size_t bytes) {
    FISEDIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  };
  auto* dst = out.data_as<std::uint16_t>();
  switch (host.dtype()) {
    case DType::f16: copy_in(dst, host.data(), n * 2); break;
    case DType::bf16: {
      const auto staging = allocate(DType::bf16, {host.numel()});
      copy_in(staging.data(), host.data(), n * 2);
      FISEDIT_CUDA_CHECK(kernels::bf16_to_half(staging.data_as<const std::uint16_t>(), dst, n, stream));
      break;
    }
    case DType::f32:
    case DType::f64: {
      std::vector<float> narrowed;
      const void* src = host.data();
      if (host.dtype() == DType::f64) {
        narrowed = host.to_f32();
        src = narrowed.data();
      }
      const auto staging = allocate(DType::f32, {host.numel()});
      copy_in(staging.data(), src, n * 4);
      FISEDIT_CUDA_CHECK(kernels::float_to_half(staging.data_as<const float>(), dst, n, stream));
      break;
    }
    default: {
      const auto values = host.to_i64();
      std::vector<std::int32_t> ids(n);
      for (std::size_t i = 0; i < n; ++i) {
        const auto v = values[i];
        if (v < std::numeric_limits<std::int32_t>::min() || v > std::numeric_limits<std::int32_t>::max())
          throw Error(ErrorCode::invalid_argument,
                      "upload: integer value " + std::to_string(v) + " does not fit in I32");
        ids[i] = static_cast<std::int32_t>(v);
      }
      copy_in(out.data(), ids.data(), n * 4);
      break;
    }
  }
  // Pageable copies may still read the host buffer after cudaMemcpyAsync returns; the staging blocks
  // go back to the pool now, which stream order makes safe.
  synchronize();
}

void CudaBackend::download_impl(const DeviceTensor& t, std::span<float> out) {
  const cudaStream_t stream = s_->stream.get();
  const std::size_t n = out.size();
  switch (t.dtype()) {
    case DType::f32:
      FISEDIT_CUDA_CHECK(cudaMemcpyAsync(out.data(), t.data(), n * 4, cudaMemcpyDeviceToHost, stream));
      break;
    case DType::f16: {
      const auto widened = allocate(DType::f32, t.shape());
      FISEDIT_CUDA_CHECK(kernels::half_to_float(t.data_as<const std::uint16_t>(), widened.data_as<float>(), n, stream));
      FISEDIT_CUDA_CHECK(cudaMemcpyAsync(out.data(), widened.data(), n * 4, cudaMemcpyDeviceToHost, stream));
      break;
    }
    case DType::i32: {
      std::vector<std::int32_t> ids(n);
      FISEDIT_CUDA_CHECK(cudaMemcpyAsync(ids.data(), t.data(), n * 4, cudaMemcpyDeviceToHost, stream));
      synchronize();
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(ids[i]);
      return;
    }
    default:
      throw Error(ErrorCode::invalid_argument, "download: unexpected device dtype " + std::string(dtype_name(t.dtype())));
  }
  synchronize();
}

bool CudaBackend::download_rgb8_impl(const DeviceTensor& t, std::span<std::uint8_t> out) {
  if (t.dtype() != DType::f16 && t.dtype() != DType::f32) return Backend::download_rgb8_impl(t, out);
  const cudaStream_t stream = s_->stream.get();
  const std::size_t n = out.size(), flag_at = (n + 15) / 16 * 16;
  // The bytes and the not-finite flag in one buffer, one copy back.
  const auto bytes = allocate(DType::u8, {static_cast<std::int64_t>(flag_at + sizeof(int))});
  int* nonfinite = reinterpret_cast<int*>(bytes.data_as<std::uint8_t>() + flag_at);
  FISEDIT_CUDA_CHECK(cudaMemsetAsync(nonfinite, 0, sizeof(int), stream));
  FISEDIT_CUDA_CHECK(kernels::to_rgb8(t.data(), t.dtype() == DType::f16, bytes.data_as<std::uint8_t>(), n, nonfinite, stream));
  // Through pinned memory: a pageable destination would be staged by the driver in pieces.
  const auto host = allocate_host(DType::u8, bytes.shape());
  FISEDIT_CUDA_CHECK(cudaMemcpyAsync(host.data(), bytes.data(), bytes.nbytes(), cudaMemcpyDeviceToHost, stream));
  synchronize();
  int flag = 0;
  std::memcpy(&flag, host.data_as<const std::uint8_t>() + flag_at, sizeof(int));
  std::copy_n(host.data_as<const std::uint8_t>(), n, out.begin());
  return flag == 0;
}

}  // namespace fisedit
