// The LayerNorm kernel (layer_norm.cuh): a two-pass mean and variance per row, in float.
#include "layer_norm.cuh"
#include "half_vector.cuh"
#include "launch.cuh"

#include <cuda_fp16.h>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 128;  // rows are 320 to 1280 channels in SD: one access or a few per thread


// The sum over the block, in every thread.
__device__ inline float block_sum(float v) {
  __shared__ float warps[kThreads / 32];
  __shared__ float total;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (lane == 0) warps[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? warps[lane] : 0.0f;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) total = v;
  }
  __syncthreads();
  const float sum = total;
  __syncthreads();  // the next call reuses `warps` and `total`
  return sum;
}

// One block per row; kWidth = 8 when C % 8 == 0 and every pointer is 16-byte aligned.
template <int kWidth>
__global__ void __launch_bounds__(kThreads) layer_norm_kernel(const std::uint16_t* x, const std::uint16_t* gamma,
                                                              const std::uint16_t* beta, std::uint16_t* y,
                                                              std::int64_t c, float eps) {
  dependent_prologue();
  const std::uint16_t* row = x + blockIdx.x * c;
  std::uint16_t* out = y + blockIdx.x * c;
  const std::int64_t first = threadIdx.x * std::int64_t{kWidth}, stride = std::int64_t{kThreads} * kWidth;
  float f[kWidth];

  float sum = 0.0f;
  for (std::int64_t j = first; j < c; j += stride) {
    load_halves<kWidth>(row + j, f);
#pragma unroll
    for (int k = 0; k < kWidth; ++k) sum += f[k];
  }
  const float mean = block_sum(sum) / static_cast<float>(c);

  float squares = 0.0f;
  for (std::int64_t j = first; j < c; j += stride) {
    load_halves<kWidth>(row + j, f);
#pragma unroll
    for (int k = 0; k < kWidth; ++k) squares += (f[k] - mean) * (f[k] - mean);
  }
  const float rstd = rsqrtf(block_sum(squares) / static_cast<float>(c) + eps);

  for (std::int64_t j = first; j < c; j += stride) {
    float g[kWidth], b[kWidth];
    load_halves<kWidth>(row + j, f);
    load_halves<kWidth>(gamma + j, g);
    load_halves<kWidth>(beta + j, b);
#pragma unroll
    for (int k = 0; k < kWidth; ++k) f[k] = (f[k] - mean) * rstd * g[k] + b[k];
    store_halves<kWidth>(out + j, f);
  }
}

}  // namespace

cudaError_t layer_norm(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                       std::uint16_t* y, std::int64_t rows, std::int64_t c, float eps, cudaStream_t stream) {
  if (rows == 0 || c == 0) return cudaSuccess;
  if (rows > 0x7fffffff) return cudaErrorInvalidValue;
  const auto grid = static_cast<unsigned>(rows);
  if (c % kVec == 0 && aligned16(x) && aligned16(y) && aligned16(gamma) && aligned16(beta))
    launch_kernel(layer_norm_kernel<kVec>, grid, kThreads, 0, stream, x, gamma, beta, y, c, eps);
  else
    launch_kernel(layer_norm_kernel<1>, grid, kThreads, 0, stream, x, gamma, beta, y, c, eps);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
