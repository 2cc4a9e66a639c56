// Element type conversion kernels (convert.cuh): half <-> float and bfloat16 -> half.
#include "convert.cuh"
#include "launch.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void half_to_float_kernel(const std::uint16_t* in, float* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    out[i] = __half2float(__ushort_as_half(in[i]));
}

__global__ void float_to_half_kernel(const float* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    out[i] = __half_as_ushort(__float2half_rn(in[i]));
}

__global__ void bf16_to_half_kernel(const std::uint16_t* in, std::uint16_t* out, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x)
    out[i] = __half_as_ushort(__float2half_rn(__bfloat162float(__ushort_as_bfloat16(in[i]))));
}

// The same float operations, in the same order, as Backend::download_rgb8_impl's host loop (no
// contraction into fused multiply-adds), so that both give the same bytes.
template <bool Half>
__global__ void to_rgb8_kernel(const void* in, std::uint8_t* out, std::size_t n, int* nonfinite) {
  bool bad = false;
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < n; i += std::size_t{gridDim.x} * blockDim.x) {
    const float x = Half ? __half2float(__ushort_as_half(static_cast<const std::uint16_t*>(in)[i]))
                         : static_cast<const float*>(in)[i];
    bad |= !isfinite(x);
    const float unit = fminf(fmaxf(__fadd_rn(__fdiv_rn(x, 2.0f), 0.5f), 0.0f), 1.0f);
    out[i] = static_cast<std::uint8_t>(__float2int_rn(__fmul_rn(255.0f, unit)));
  }
  if (bad) *nonfinite = 1;
}

}  // namespace

cudaError_t to_rgb8(const void* in, bool half, std::uint8_t* out, std::size_t n, int* nonfinite, cudaStream_t stream) {
  if (half)
    to_rgb8_kernel<true><<<blocks_for(n), kThreads, 0, stream>>>(in, out, n, nonfinite);
  else
    to_rgb8_kernel<false><<<blocks_for(n), kThreads, 0, stream>>>(in, out, n, nonfinite);
  return cudaGetLastError();
}

cudaError_t half_to_float(const std::uint16_t* in, float* out, std::size_t n, cudaStream_t stream) {
  half_to_float_kernel<<<blocks_for(n), kThreads, 0, stream>>>(in, out, n);
  return cudaGetLastError();
}

cudaError_t float_to_half(const float* in, std::uint16_t* out, std::size_t n, cudaStream_t stream) {
  float_to_half_kernel<<<blocks_for(n), kThreads, 0, stream>>>(in, out, n);
  return cudaGetLastError();
}

cudaError_t bf16_to_half(const std::uint16_t* in, std::uint16_t* out, std::size_t n, cudaStream_t stream) {
  bf16_to_half_kernel<<<blocks_for(n), kThreads, 0, stream>>>(in, out, n);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
