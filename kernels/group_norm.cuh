#pragma once
// GroupNorm over channels-last fp16 activations (IEEE half bits) with float32 statistics, in two
// launches so the sparse editor can reuse cached statistics:
//   group_norm_stats: x [N, L, C] -> mean, var float [N, G] (biased variance, no eps), from a
//                     Welford reduction per block merged with Chan's formula (no cancellation);
//   group_norm_apply: y = (x - mean) / sqrt(var + eps) * gamma + beta, optionally SiLU, from any
//                     mean / var of that shape.
// When C is a multiple of 8 (every SD layer), both walk whole rows: a thread owns 8 channels and
// loops over positions, so loads are coalesced 16-byte vectors whatever the group width (4 channels
// per group in the VAE's 128-channel levels, 10 in the U-Net's 320-channel level) and the per-channel
// scale and shift are computed once per thread. Statistics go per channel per chunk of positions,
// then merge per group (Chan's formula) in a second small kernel. Other shapes take slower
// one-element-per-thread fallbacks that compute the same affine map, so gathered and dense outputs
// match bit for bit.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct GroupNormShape {
  std::int64_t n = 0, l = 0, c = 0;  // x is [n, l, c]
  int groups = 1;                    // divides c
};

// Device workspace group_norm_stats needs (float partial moments), in bytes.
std::size_t group_norm_workspace_bytes(const GroupNormShape& shape);

// cudaErrorInvalidValue when n or groups exceed 65535 (grid dimensions).
cudaError_t group_norm_stats(const std::uint16_t* x, const GroupNormShape& shape, float* workspace, float* mean,
                             float* var, cudaStream_t stream);

// gamma, beta [C] fp16; mean, var [N, G] float.
cudaError_t group_norm_apply(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                             const float* mean, const float* var, std::uint16_t* y, const GroupNormShape& shape,
                             float eps, bool silu, cudaStream_t stream);

}  // namespace fisedit::kernels
