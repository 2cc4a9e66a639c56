// Attention as two GEMMs around a row softmax, per (batch, head, block of query rows). Heads are
// read in place from the [B, L, heads * D] projections through the GEMM leading dimension, so
// nothing is transposed; query blocks keep each thread's score matrix small for long sequences (a
// 64x64 VAE latent has 4096 tokens attending to 4096) and give every thread work when there are
// fewer heads than threads.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"

#include <algorithm>
#include <vector>

namespace fisedit {
namespace {

// The score matrices of all threads together: at most this many floats (16 MiB).
constexpr std::int64_t kScoreBudget = std::int64_t{1} << 22;

// Softmax of one row over its first `valid` entries; the rest (masked) become 0.
void softmax_row(float* row, std::int64_t valid, std::int64_t length) {
  float max = row[0];
  for (std::int64_t j = 1; j < valid; ++j) max = std::max(max, row[j]);
  float sum = 0.0f;
  for (std::int64_t j = 0; j < valid; ++j) {
    row[j] = std::exp(row[j] - max);
    sum += row[j];
  }
  const float inv = 1.0f / sum;
  for (std::int64_t j = 0; j < valid; ++j) row[j] *= inv;
  std::fill(row + valid, row + length, 0.0f);
}

}  // namespace

void CpuBackend::attention_impl(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                                const AttentionParams& params, DeviceTensor& out) {
  // Float32 throughout on the CPU: params.upcast changes nothing here.
  const std::int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), channels = q.dim(2);
  const std::int64_t heads = params.heads, d = channels / heads, threads = pool_.size();
  // Enough blocks for every thread, none larger than its share of the budget.
  const std::int64_t blocks_per_head =
      std::max((threads + batch * heads - 1) / (batch * heads), (lq * lk * threads + kScoreBudget - 1) / kScoreBudget);
  const std::int64_t rows = std::max<std::int64_t>(1, (lq + blocks_per_head - 1) / blocks_per_head);
  const std::int64_t blocks = (lq + rows - 1) / rows;
  std::vector<float> scores(static_cast<std::size_t>(threads * rows * lk));
  const auto block_attention = [&](std::int64_t item, int thread) {
    const std::int64_t bh = item / blocks, first = item % blocks * rows, count = std::min(rows, lq - first);
    const std::int64_t b = bh / heads, h = bh % heads;
    const float* qh = q.data_as<const float>() + (b * lq + first) * channels + h * d;
    const float* kh = k.data_as<const float>() + b * lk * channels + h * d;
    const float* vh = v.data_as<const float>() + b * lk * channels + h * d;
    float* oh = out.data_as<float>() + (b * lq + first) * channels + h * d;
    float* s = scores.data() + thread * rows * lk;
    // s[count, Lk] = scale * q[first:first+count] . k^T
    cpu::gemm_nt(count, lk, d, params.scale, qh, channels, kh, channels, 0.0f, s, lk);
    for (std::int64_t r = 0; r < count; ++r)
      softmax_row(s + r * lk, params.causal ? std::min(lk, first + r + 1) : lk, lk);
    // out[first:first+count] = s . v
    cpu::gemm_nn(count, d, lk, 1.0f, s, lk, vh, channels, 0.0f, oh, channels);
  };
  const std::int64_t items = batch * heads * blocks;
  if (threads == 1 || items * rows * lk * d < (std::int64_t{1} << 17)) {
    for (std::int64_t item = 0; item < items; ++item) block_attention(item, 0);
  } else {
    pool_.run(items, block_attention);
  }
}

// The two halves of attention_impl, with the probabilities stored [B, heads, Lq, Lk] in between (the
// same blocks of query rows, so the same GEMM calls and softmax per row).
void CpuBackend::attention_probs_impl(const DeviceTensor& q, const DeviceTensor& k, const AttentionParams& params,
                                      DeviceTensor& out) {
  const std::int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), channels = q.dim(2);
  const std::int64_t heads = params.heads, d = channels / heads, threads = pool_.size();
  const std::int64_t rows = std::max<std::int64_t>(1, (lq + threads - 1) / threads);
  const std::int64_t blocks = (lq + rows - 1) / rows;
  const auto block_probs = [&](std::int64_t item, int) {
    const std::int64_t bh = item / blocks, first = item % blocks * rows, count = std::min(rows, lq - first);
    const std::int64_t b = bh / heads, h = bh % heads;
    const float* qh = q.data_as<const float>() + (b * lq + first) * channels + h * d;
    const float* kh = k.data_as<const float>() + b * lk * channels + h * d;
    float* p = out.data_as<float>() + (bh * lq + first) * lk;
    cpu::gemm_nt(count, lk, d, params.scale, qh, channels, kh, channels, 0.0f, p, lk);
    for (std::int64_t r = 0; r < count; ++r)
      softmax_row(p + r * lk, params.causal ? std::min(lk, first + r + 1) : lk, lk);
  };
  const std::int64_t items = batch * heads * blocks;
  if (threads == 1 || batch * heads * lq * lk * d < (std::int64_t{1} << 17)) {
    for (std::int64_t item = 0; item < items; ++item) block_probs(item, 0);
  } else {
    pool_.run(items, block_probs);
  }
}

void CpuBackend::attention_apply_impl(const DeviceTensor& probs, const DeviceTensor& v, DeviceTensor& out) {
  const std::int64_t batch = probs.dim(0), heads = probs.dim(1), lq = probs.dim(2), lk = probs.dim(3);
  const std::int64_t channels = v.dim(2), d = channels / heads, threads = pool_.size();
  const std::int64_t rows = std::max<std::int64_t>(1, (lq + threads - 1) / threads);
  const std::int64_t blocks = (lq + rows - 1) / rows;
  const auto block_apply = [&](std::int64_t item, int) {
    const std::int64_t bh = item / blocks, first = item % blocks * rows, count = std::min(rows, lq - first);
    const std::int64_t b = bh / heads, h = bh % heads;
    const float* p = probs.data_as<const float>() + (bh * lq + first) * lk;
    const float* vh = v.data_as<const float>() + b * lk * channels + h * d;
    float* oh = out.data_as<float>() + (b * lq + first) * channels + h * d;
    cpu::gemm_nn(count, d, lk, 1.0f, p, lk, vh, channels, 0.0f, oh, channels);
  };
  const std::int64_t items = batch * heads * blocks;
  if (threads == 1 || batch * heads * lq * lk * d < (std::int64_t{1} << 17)) {
    for (std::int64_t item = 0; item < items; ++item) block_apply(item, 0);
  } else {
    pool_.run(items, block_apply);
  }
}

void CpuBackend::replace_attention_columns_impl(const DeviceTensor& source, const DeviceTensor& columns,
                                                std::int64_t first, DeviceTensor& out) {
  const std::int64_t heads = out.dim(1), lq = out.dim(2), lk = out.dim(3), ls = source.dim(3);
  const auto* map = columns.data_as<const std::int32_t>();
  for (std::int64_t j = 0; j < lk; ++j)
    if (map[j] < -1 || map[j] >= ls)
      throw Error(ErrorCode::invalid_argument, "replace_attention_columns: column " + std::to_string(j) + " maps to " +
                                                   std::to_string(map[j]) + ", outside [-1, " + std::to_string(ls) + ")");
  const std::int64_t rows = source.dim(0) * heads * lq;
  cpu::parallel_for(pool_, rows, lk, [&](std::int64_t row) {
    const float* src = source.data_as<const float>() + row * ls;
    float* dst = out.data_as<float>() + (first * heads * lq + row) * lk;
    for (std::int64_t j = 0; j < lk; ++j)
      if (map[j] >= 0) dst[j] = src[map[j]];
  });
}

}  // namespace fisedit
