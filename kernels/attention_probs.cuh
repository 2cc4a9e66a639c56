#pragma once
// Attention with explicit probabilities (cross-attention control, METHOD.md 3.1): the probabilities
// softmax(scale q k^T) stored per head, the product of stored probabilities with the values, and
// the replacement of chosen key columns by those of another probability tensor. Meant for
// cross-attention (Lk = 77 text tokens), where storing [B, heads, Lq, Lk] costs little; the flash
// kernels (attention.cuh) remain the route when the probabilities are not needed.
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct AttentionProbsArgs {
  const __half* q = nullptr;  // [batch, lq, heads * head_dim]
  const __half* k = nullptr;  // [batch, lk, heads * head_dim]
  __half* probs = nullptr;    // [batch, heads, lq, lk]
  std::int64_t batch = 0, heads = 0, head_dim = 0, lq = 0, lk = 0;
  float scale = 1.0f;
  bool causal = false;
};

// The largest head width attention_probs takes (its query rows live in shared memory as float32).
constexpr std::int64_t kAttentionProbsMaxHeadDim = 1024;

// Scores and softmax in float32, probabilities rounded to fp16 once. cudaErrorInvalidValue for a head
// wider than kAttentionProbsMaxHeadDim.
cudaError_t attention_probs(const AttentionProbsArgs& args, cudaStream_t stream);

struct AttentionApplyArgs {
  const __half* probs = nullptr;  // [batch, heads, lq, lk]
  const __half* v = nullptr;      // [batch, lk, heads * head_dim]
  __half* out = nullptr;          // [batch, lq, heads * head_dim]
  std::int64_t batch = 0, heads = 0, head_dim = 0, lq = 0, lk = 0;
};

// out = probs . v per head, accumulated in float32.
cudaError_t attention_apply(const AttentionApplyArgs& args, cudaStream_t stream);

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
