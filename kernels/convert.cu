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


}  // namespace

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
