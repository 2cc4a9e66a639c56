#pragma once
// A GroupNorm as a per-channel affine map (then SiLU), computed the same way wherever it is applied:
// by the GroupNorm kernels over whole tensors and by a sparse convolution's gather at a few positions,
// so both give the same halves bit for bit.
#include <cstdint>

namespace fisedit::kernels {

// Channel ch of image b in group set = b * groups + ch / per_group: y = x * scale + shift.
__device__ inline void channel_affine(const float* mean, const float* var, float gamma, float beta, std::int64_t set,
                                      float eps, float& scale, float& shift) {
  scale = gamma * rsqrtf(var[set] + eps);
  shift = __fmaf_rn(-mean[set], scale, beta);
}

__device__ inline float finish(float v, float scale, float shift, bool silu) {
  const float r = __fmaf_rn(v, scale, shift);
  return silu ? r / (1.0f + __expf(-r)) : r;
}

}  // namespace fisedit::kernels
