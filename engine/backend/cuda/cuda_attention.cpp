// Attention: cuDNN's fused flash attention where it takes the shape and the routing sends it there
// (cuda_attention_cudnn.cpp), else kernels/attention (tensor-core flash kernels for head widths that
// are multiples of 8 up to 160, flash2 by default and the previous one under FISEDIT_ATTENTION=legacy; a CUDA-core
// fallback for the rest, e.g. the VAE's single 512-wide head; flash2 splits the keys across blocks
// when few query rows meet many keys, as in a sparse edit's self-attention). Neither
// materialises the [Lq, Lk] scores, and both keep scores, softmax and output accumulation in
// float32, so AttentionParams::upcast (SD2's "upcast attention") needs no separate path here: it is
// always in effect. The flash kernel rounds the probabilities to fp16 for the P.V product, which
// is what torch does after an upcast softmax too.
#include "backend/cuda/cuda_state.h"

#include "attention.cuh"
#include "attention_probs.cuh"
#include "softmax.cuh"

#include <limits>

namespace fisedit {

// q [B, Lq, heads * D], k and v [B, Lk, heads * D] -> out [B, Lq, heads * D]
void CudaBackend::attention_impl(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                                 const AttentionParams& params, DeviceTensor& out) {
  const std::int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), head_dim = q.dim(2) / params.heads;
  if (out.numel() == 0) return;
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  if (lq > kIntMax || lk > kIntMax || batch * params.heads > 65535)
    throw Error(ErrorCode::unsupported, "attention: " + shape_to_string(q.shape()) + " with " +
                                            std::to_string(params.heads) + " heads is too large for the CUDA kernels");
  // One wide head (the VAE's 512): two tensor-core GEMMs around a float32 softmax beat the CUDA-core
  // fallback by an order of magnitude; the [Lq, Lk] fp16 scores (170 MB at 96x96 latents) are
  // affordable for the VAE's single attention layer.
  if (params.heads == 1 && head_dim > 160 && !params.causal) {
    for (std::int64_t b = 0; b < batch; ++b) {
      const auto qb = q.slice_rows(b, b + 1).reshaped({lq, head_dim});
      const auto kb = k.slice_rows(b, b + 1).reshaped({lk, head_dim});
      const auto vt = nhwc_to_nchw(v.slice_rows(b, b + 1).reshaped({1, lk, 1, head_dim})).reshaped({head_dim, lk});
      // Scaling q first keeps the fp16 scores far from overflow.
      auto scores = linear(scale(qb, params.scale), kb, DeviceTensor());  // [Lq, Lk] = (scale q) k^T
      FISEDIT_CUDA_CHECK(kernels::softmax_rows(scores.data_as<__half>(), lq, lk, 1.0f, s_->stream.get()));
      const auto ob = linear(scores, vt, DeviceTensor());  // [Lq, D] = p v
      auto destination = out.slice_rows(b, b + 1).reshaped({lq, head_dim});
      copy_impl(ob, destination);
    }
    return;
  }
  // cuDNN's fused flash attention where the route takes it there (cuda_attention_cudnn.cpp).
  if (attention_cudnn(q, k, v, params, out)) return;
  kernels::AttentionArgs args;
  args.q = q.data_as<const std::uint16_t>();
  args.k = k.data_as<const std::uint16_t>();
  args.v = v.data_as<const std::uint16_t>();
  args.out = out.data_as<std::uint16_t>();
  args.batch = static_cast<int>(batch);
  args.heads = params.heads;
  args.head_dim = static_cast<int>(head_dim);
  args.lq = static_cast<int>(lq);
  args.lk = static_cast<int>(lk);
  args.scale = params.scale;
  args.causal = params.causal;
  if (kernels::attention_path(args) == kernels::AttentionPath::unsupported)
    throw Error(ErrorCode::unsupported,
                "attention: head width " + std::to_string(head_dim) + " needs " +
                    std::to_string(kernels::attention_fallback_shared_bytes(args.head_dim)) +
                    " bytes of shared memory per block, more than this GPU has");
  // The split-key route's partial rows: a temporary from the pool like any other, given back once the
  // kernels are enqueued (stream order keeps its next user behind them).
  const std::size_t workspace_bytes = kernels::attention_workspace_bytes(args);
  const DeviceTensor workspace =
      workspace_bytes ? allocate(DType::u8, {static_cast<std::int64_t>(workspace_bytes)}) : DeviceTensor();
  FISEDIT_CUDA_CHECK(kernels::attention(args, s_->stream.get(), workspace.data()));
}

// Explicit probabilities (cross-attention control): the scores and the product with the values are
// strided-batched cuBLAS GEMMs over one batch item's heads (heads side by side in the channels: a
// head's matrix is every row's slice of D channels, so heads are D apart), the softmax a warp per row
// on float32 scores. Measured on an H100 (SD2 768, the 16 cross-attentions of a step): hand-written
// CUDA-core kernels for both took 4.5 ms, the flash kernel without probabilities 0.28 ms.
namespace {

constexpr float kOne = 1.0f, kZero = 0.0f;

// cuBLAS takes int sizes and leading dimensions.
void require_int_sizes(const char* op, const DeviceTensor& t, std::int64_t lq, std::int64_t lk, std::int64_t channels,
                       std::int64_t heads) {
  constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
  if (lq > kIntMax || lk > kIntMax || channels > kIntMax || heads > kIntMax)
    throw Error(ErrorCode::unsupported, std::string(op) + ": " + shape_to_string(t.shape()) + " is too large for cuBLAS");
}

}  // namespace

// q [B, Lq, heads * D], k [B, Lk, heads * D] -> out [B, heads, Lq, Lk]
void CudaBackend::attention_probs_impl(const DeviceTensor& q, const DeviceTensor& k, const AttentionParams& params,
                                       DeviceTensor& out) {
  const std::int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), c = q.dim(2), heads = params.heads, d = c / heads;
  if (out.numel() == 0) return;
  require_int_sizes("attention_probs", q, lq, lk, c, heads);
  auto scores = allocate(DType::f32, {heads, lq, lk});  // one batch item's, reused by the next
  for (std::int64_t b = 0; b < batch; ++b) {
    // Column-major: scores_h^T [Lk, Lq] = (K_h [Lk, D]) (Q_h [Lq, D])^T, scaled.
    FISEDIT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        s_->cublas.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(lk), static_cast<int>(lq), static_cast<int>(d),
        &params.scale, k.data_as<const __half>() + b * lk * c, CUDA_R_16F, static_cast<int>(c), d,
        q.data_as<const __half>() + b * lq * c, CUDA_R_16F, static_cast<int>(c), d, &kZero, scores.data_as<float>(),
        CUDA_R_32F, static_cast<int>(lk), lq * lk, static_cast<int>(heads), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    FISEDIT_CUDA_CHECK(kernels::probabilities_from_scores(scores.data_as<const float>(),
                                                          out.data_as<__half>() + b * heads * lq * lk, heads * lq, lq,
                                                          lk, params.causal, s_->stream.get()));
  }
}

// probs [B, heads, Lq, Lk], v [B, Lk, heads * D] -> out [B, Lq, heads * D]
void CudaBackend::attention_apply_impl(const DeviceTensor& probs, const DeviceTensor& v, DeviceTensor& out) {
  const std::int64_t batch = probs.dim(0), heads = probs.dim(1), lq = probs.dim(2), lk = probs.dim(3);
  const std::int64_t c = v.dim(2), d = c / heads;
  if (out.numel() == 0) return;
  require_int_sizes("attention_apply", probs, lq, lk, c, heads);
  for (std::int64_t b = 0; b < batch; ++b)
    // Column-major: out_h^T [D, Lq] = (V_h^T [D, Lk]) (P_h^T [Lk, Lq]), accumulated in float32.
    FISEDIT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        s_->cublas.get(), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(d), static_cast<int>(lq), static_cast<int>(lk),
        &kOne, v.data_as<const __half>() + b * lk * c, CUDA_R_16F, static_cast<int>(c), d,
        probs.data_as<const __half>() + b * heads * lq * lk, CUDA_R_16F, static_cast<int>(lk), lq * lk, &kZero,
        out.data_as<__half>() + b * lq * c, CUDA_R_16F, static_cast<int>(c), d, static_cast<int>(heads),
        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void CudaBackend::replace_attention_columns_impl(const DeviceTensor& source, const DeviceTensor& columns,
                                                 std::int64_t first, DeviceTensor& out) {
  kernels::ReplaceColumnsArgs args;
  args.source = source.data_as<const __half>();
  args.columns = columns.data_as<const std::int32_t>();
  args.probs = out.data_as<__half>();
  args.items = source.dim(0);
  args.heads = out.dim(1);
  args.lq = out.dim(2);
  args.lk = out.dim(3);
  args.ls = source.dim(3);
  args.first = first;
  FISEDIT_CUDA_CHECK(kernels::replace_attention_columns(args, s_->stream.get()));
}

}  // namespace fisedit
