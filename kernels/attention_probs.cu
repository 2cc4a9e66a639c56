#include "attention_probs.cuh"

#include <algorithm>
#include <cfloat>
#include <cstdint>

namespace fisedit::kernels {
namespace {

constexpr int kWarps = 8;
// Query rows a warp takes in turn: a block stages its head's keys (or values) once for
// kWarps * kRowsPerWarp rows; staging them per 8 rows cost more than the arithmetic.
constexpr int kRowsPerWarp = 8;
constexpr int kRowsPerBlock = kWarps * kRowsPerWarp;
constexpr unsigned kFull = 0xffffffffu;

// q_row (float32, shared) . k_row (fp16, global memory)
__device__ float dot(const float* q_row, const __half* k_row, std::int64_t d) {
  float s = 0.0f;
  for (std::int64_t e = 0; e < d; ++e) s = fmaf(q_row[e], __half2float(k_row[e]), s);
  return s;
}

// q_row (float32, shared) . k_row (fp16 pairs, shared)
__device__ float dot2(const float* q_row, const __half2* k_row, std::int64_t pairs) {
  float s = 0.0f;
  for (std::int64_t e = 0; e < pairs; ++e) {
    const float2 k = __half22float2(k_row[e]);
    s = fmaf(q_row[2 * e], k.x, fmaf(q_row[2 * e + 1], k.y, s));
  }
  return s;
}

// One warp per query row of one (batch, head): its lanes take the keys in turn. Two passes over the
// keys: the first finds the row's maximum and the sum of exponentials (online, per lane, then merged
// across the warp), the second writes the normalised probabilities. Recomputing the scores is cheaper
// than keeping them for the 77 keys of cross-attention.
// kShared: the head's keys are staged in shared memory first (even head widths, keys that fit), rows
// padded by one pair so that the 32 lanes, each reading its own key row, hit 32 different banks;
// otherwise every lane reads its key row from global memory (correct, but 32 cache lines per load).
template <bool kShared>
__global__ void attention_probs_kernel(AttentionProbsArgs a, std::int64_t row_blocks) {
  extern __shared__ float shared[];  // [kWarps, head_dim] float queries, then (kShared) [lk, head_dim / 2 + 1] key pairs
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.x / row_blocks;
  const std::int64_t first_row = blockIdx.x % row_blocks * kRowsPerBlock;
  const std::int64_t b = bh / a.heads, h = bh % a.heads, d = a.head_dim, channels = a.heads * d;
  const __half* k = a.k + b * a.lk * channels + h * d;
  const std::int64_t pairs = d / 2, stride = pairs + 1;
  auto* k_pairs = reinterpret_cast<__half2*>(shared + kWarps * d);
  if constexpr (kShared) {
    for (std::int64_t n = threadIdx.x; n < a.lk * pairs; n += blockDim.x) {
      const std::int64_t j = n / pairs, e = n % pairs;
      k_pairs[j * stride + e] = reinterpret_cast<const __half2*>(k + j * channels)[e];
    }
    __syncthreads();
  }
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const std::int64_t i = first_row + r * kWarps + warp;  // query row
    if (i >= a.lq) return;  // the whole warp leaves together; no block-wide barrier follows
    float* q_row = shared + warp * d;
    __syncwarp();  // the previous row's scores are done with q_row
    const __half* q = a.q + (b * a.lq + i) * channels + h * d;
    for (std::int64_t e = lane; e < d; e += 32) q_row[e] = __half2float(q[e]);
    __syncwarp();
    const auto score = [&](std::int64_t j) {
      if constexpr (kShared)
        return a.scale * dot2(q_row, k_pairs + j * stride, pairs);
      else
        return a.scale * dot(q_row, k + j * channels, d);
    };

    const std::int64_t valid = a.causal && i + 1 < a.lk ? i + 1 : a.lk;
    float m = -FLT_MAX, sum = 0.0f;
    for (std::int64_t j = lane; j < valid; j += 32) {
      const float s = score(j);
      if (s > m) {
        sum = sum * __expf(m - s) + 1.0f;
        m = s;
      } else {
        sum += __expf(s - m);
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float m_other = __shfl_xor_sync(kFull, m, offset), sum_other = __shfl_xor_sync(kFull, sum, offset);
      const float top = fmaxf(m, m_other);
      sum = sum * __expf(m - top) + sum_other * __expf(m_other - top);
      m = top;
    }
    const float inverse = 1.0f / sum;
    __half* p = a.probs + (bh * a.lq + i) * a.lk;
    for (std::int64_t j = lane; j < a.lk; j += 32) p[j] = __float2half(j < valid ? __expf(score(j) - m) * inverse : 0.0f);
  }
}

// One warp per query row of one (batch, head), kRowsPerWarp rows in turn; lanes own output channels
// (so value rows are read coalesced), and each lane's probability is broadcast across the warp 32 keys
// at a time. kShared: the head's values are staged in shared memory once per block.
constexpr int kChannelsPerLane = 4;

template <bool kShared>
__global__ void attention_apply_kernel(AttentionApplyArgs a, std::int64_t row_blocks) {
  extern __shared__ __half values[];  // (kShared) [lk, head_dim]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const std::int64_t bh = blockIdx.x / row_blocks;
  const std::int64_t first_row = blockIdx.x % row_blocks * kRowsPerBlock;
  const std::int64_t b = bh / a.heads, h = bh % a.heads, d = a.head_dim, channels = a.heads * d;
  const __half* v_head = a.v + b * a.lk * channels + h * d;
  if constexpr (kShared) {
    for (std::int64_t n = threadIdx.x; n < a.lk * d; n += blockDim.x) values[n] = v_head[n / d * channels + n % d];
    __syncthreads();
  }
  const __half* v = kShared ? values : v_head;
  const std::int64_t v_stride = kShared ? d : channels;
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const std::int64_t i = first_row + r * kWarps + warp;
    if (i >= a.lq) return;
    const __half* p = a.probs + (bh * a.lq + i) * a.lk;
    __half* out = a.out + (b * a.lq + i) * channels + h * d;
    for (std::int64_t d0 = 0; d0 < d; d0 += 32 * kChannelsPerLane) {
      float acc[kChannelsPerLane] = {};
      for (std::int64_t j0 = 0; j0 < a.lk; j0 += 32) {
        const float mine = j0 + lane < a.lk ? __half2float(p[j0 + lane]) : 0.0f;
        const int keys = static_cast<int>(a.lk - j0 < 32 ? a.lk - j0 : 32);
        for (int t = 0; t < keys; ++t) {
          const float pt = __shfl_sync(kFull, mine, t);
          const __half* v_row = v + (j0 + t) * v_stride;
#pragma unroll
          for (int c = 0; c < kChannelsPerLane; ++c) {
            const std::int64_t e = d0 + lane + 32 * c;
            if (e < d) acc[c] = fmaf(pt, __half2float(v_row[e]), acc[c]);
          }
        }
      }
#pragma unroll
      for (int c = 0; c < kChannelsPerLane; ++c) {
        const std::int64_t e = d0 + lane + 32 * c;
        if (e < d) out[e] = __float2half(acc[c]);
      }
    }
  }
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

cudaError_t attention_probs(const AttentionProbsArgs& a, cudaStream_t stream) {
  if (a.batch * a.heads * a.lq * a.lk == 0) return cudaSuccess;
  if (a.head_dim > kAttentionProbsMaxHeadDim || a.head_dim < 1) return cudaErrorInvalidValue;
  const std::int64_t row_blocks = (a.lq + kRowsPerBlock - 1) / kRowsPerBlock, blocks = a.batch * a.heads * row_blocks;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  const auto query_bytes = static_cast<std::size_t>(kWarps * a.head_dim) * sizeof(float);
  const auto key_bytes = static_cast<std::size_t>(a.lk * (a.head_dim / 2 + 1)) * sizeof(__half2);
  // Pairs of fp16 keys need an even head width and 4-byte aligned rows.
  const bool pairs = a.head_dim % 2 == 0 && reinterpret_cast<std::uintptr_t>(a.k) % 4 == 0;
  constexpr std::size_t kSharedLimit = 48 * 1024;  // without opting in to more
  if (pairs && query_bytes + key_bytes <= kSharedLimit)
    attention_probs_kernel<true><<<static_cast<unsigned>(blocks), kWarps * 32, query_bytes + key_bytes, stream>>>(a, row_blocks);
  else
    attention_probs_kernel<false><<<static_cast<unsigned>(blocks), kWarps * 32, query_bytes, stream>>>(a, row_blocks);
  return cudaGetLastError();
}

cudaError_t attention_apply(const AttentionApplyArgs& a, cudaStream_t stream) {
  if (a.batch * a.heads * a.lq * a.head_dim == 0) return cudaSuccess;
  const std::int64_t row_blocks = (a.lq + kRowsPerBlock - 1) / kRowsPerBlock, blocks = a.batch * a.heads * row_blocks;
  if (blocks > 0x7fffffff) return cudaErrorInvalidValue;
  const auto value_bytes = static_cast<std::size_t>(a.lk * a.head_dim) * sizeof(__half);
  constexpr std::size_t kSharedLimit = 32 * 1024;
  if (value_bytes <= kSharedLimit)
    attention_apply_kernel<true><<<static_cast<unsigned>(blocks), kWarps * 32, value_bytes, stream>>>(a, row_blocks);
  else
    attention_apply_kernel<false><<<static_cast<unsigned>(blocks), kWarps * 32, 0, stream>>>(a, row_blocks);
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
