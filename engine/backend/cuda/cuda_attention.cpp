// Attention: kernels/attention (a tensor-core flash kernel for head widths that are multiples of 8
// up to 160, a CUDA-core fallback for the rest, e.g. the VAE's single 512-wide head). Neither
// materialises the [Lq, Lk] scores, and both keep scores, softmax and output accumulation in
// float32, so AttentionParams::upcast (SD2's "upcast attention") needs no separate path here: it is
// always in effect. The flash kernel rounds the probabilities to fp16 for the P.V product, which
// is what torch does after an upcast softmax too.
#include "backend/cuda/cuda_state.h"

#include "attention.cuh"

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
  FISEDIT_CUDA_CHECK(kernels::attention(args, s_->stream.get()));
}

}  // namespace fisedit
