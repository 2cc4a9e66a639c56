// Explicit attention probabilities (attention_probs.cuh): the row softmax and the column replacement kernels.
#include "attention_probs.cuh"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fisedit::kernels {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kRowsPerBlock = 8;  // one warp per row

// One warp per row, its lanes over the columns (77 text tokens: three each): the row's maximum and
// sum of exponentials by warp reductions, then the normalised values.
__global__ void probabilities_kernel(const float* scores, __half* probs, std::int64_t rows, std::int64_t lq,
                                     std::int64_t lk, bool causal) {
  const std::int64_t row = blockIdx.x * std::int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // the whole warp leaves together
  const float* s = scores + row * lk;
  __half* p = probs + row * lk;
  const std::int64_t visible = causal ? std::min(lk, row % lq + 1) : lk;  // >= 1
  float m = -INFINITY;
  for (std::int64_t j = lane; j < visible; j += 32) m = fmaxf(m, s[j]);
  for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(kFull, m, offset));
  float sum = 0.0f;
  for (std::int64_t j = lane; j < visible; j += 32) sum += __expf(s[j] - m);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(kFull, sum, offset);
  const float inverse = 1.0f / sum;
  for (std::int64_t j = lane; j < lk; j += 32) p[j] = __float2half_rn(j < visible ? __expf(s[j] - m) * inverse : 0.0f);
}

__global__ void replace_columns_kernel(ReplaceColumnsArgs a) {
  const std::int64_t total = a.items * a.heads * a.lq * a.lk;
  __half* probs = a.probs + a.first * a.heads * a.lq * a.lk;
  for (std::int64_t n = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; n < total;
       n += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = n / a.lk, j = n % a.lk;
    const std::int32_t c = a.columns[j];
    if (c >= 0 && c < a.ls) probs[n] = a.source[row * a.ls + c];
  }
}

}  // namespace

cudaError_t probabilities_from_scores(const float* scores, __half* probs, std::int64_t rows, std::int64_t lq,
                                      std::int64_t lk, bool causal, cudaStream_t stream) {
  if (rows == 0 || lk == 0) return cudaSuccess;
  if (lq < 1) return cudaErrorInvalidValue;
  const std::size_t blocks = (static_cast<std::size_t>(rows) + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > 0x7fffffffu) return cudaErrorInvalidValue;
  probabilities_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * 32, 0, stream>>>(scores, probs, rows, lq, lk,
                                                                                          causal);
  return cudaGetLastError();
}

cudaError_t replace_attention_columns(const ReplaceColumnsArgs& a, cudaStream_t stream) {
  const std::int64_t total = a.items * a.heads * a.lq * a.lk;
  if (total == 0) return cudaSuccess;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((total + threads - 1) / threads, 65535 * 8));
  replace_columns_kernel<<<blocks, threads, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
