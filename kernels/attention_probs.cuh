#pragma once
// Attention with explicit probabilities (cross-attention control, docs/method.md section 3.3): the
// softmax of scores that cuBLAS computed (q k^T per head, scaled, float32) into fp16 probabilities, and the
// replacement of chosen key columns by those of another probability tensor. Meant for
// cross-attention (Lk = 77 text tokens), where storing [B, heads, Lq, Lk] costs little; the flash
// kernels (attention.cuh) remain the route when the probabilities are not needed.
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// probs [rows, lk] = softmax of the float32 scores [rows, lk] per row, in float32, rounded to fp16
// once. causal: row r sees the columns j <= r % lq only (the rows are [.., lq] blocks of queries),
// the rest are 0.
cudaError_t probabilities_from_scores(const float* scores, __half* probs, std::int64_t rows, std::int64_t lq,
                                      std::int64_t lk, bool causal, cudaStream_t stream);

struct ReplaceColumnsArgs {
  const __half* source = nullptr;   // [items, heads, lq, ls]
  const std::int32_t* columns = nullptr;  // [lk]: source column, or -1 to keep
  __half* probs = nullptr;          // [batch, heads, lq, lk], batch items first .. first + items - 1 written
  std::int64_t items = 0, heads = 0, lq = 0, lk = 0, ls = 0, first = 0;
};

// probs[first + s, h, i, j] = source[s, h, i, columns[j]] where 0 <= columns[j] < ls; other columns
// (-1, or out of range) keep their value.
cudaError_t replace_attention_columns(const ReplaceColumnsArgs& args, cudaStream_t stream);

}  // namespace fisedit::kernels
