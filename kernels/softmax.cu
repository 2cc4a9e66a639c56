// The row softmax kernel of attention done as two GEMMs (softmax.cuh).
#include "softmax.cuh"

#include <cfloat>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 512;

__device__ float block_reduce(float v, bool take_max, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(0xffffffffu, v, offset);
    v = take_max ? fmaxf(v, other) : v + other;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kThreads / 32 ? shared[lane] : (take_max ? -FLT_MAX : 0.0f);
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, v, offset);
      v = take_max ? fmaxf(v, other) : v + other;
    }
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  const float result = shared[0];
  __syncthreads();
  return result;
}

// One block per row: max, sum of exponentials, then the normalised values, all in float32.
__global__ void softmax_kernel(__half* scores, std::int64_t cols, float scale) {
  __shared__ float shared[kThreads / 32];
  __half* row = scores + blockIdx.x * cols;
  float m = -FLT_MAX;
  for (std::int64_t i = threadIdx.x; i < cols; i += kThreads) m = fmaxf(m, scale * __half2float(row[i]));
  m = block_reduce(m, true, shared);
  float sum = 0.0f;
  for (std::int64_t i = threadIdx.x; i < cols; i += kThreads) sum += __expf(scale * __half2float(row[i]) - m);
  sum = block_reduce(sum, false, shared);
  const float inverse = 1.0f / sum;
  for (std::int64_t i = threadIdx.x; i < cols; i += kThreads)
    row[i] = __float2half(__expf(scale * __half2float(row[i]) - m) * inverse);
}

}  // namespace

cudaError_t softmax_rows(__half* scores, std::int64_t rows, std::int64_t cols, float scale, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (rows > 0x7fffffff) return cudaErrorInvalidValue;
  softmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(scores, cols, scale);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
