#pragma once
// LayerNorm over the last dimension of fp16 rows (IEEE half bits), float math: a two-pass mean and
// variance per row (the row is re-read from cache, not re-summed as squares, so no cancellation).
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// x [rows, C] -> y [rows, C]: (x - mean) / sqrt(var + eps) * gamma + beta, var biased.
// cudaErrorInvalidValue when rows exceeds 2^31 - 1 (one block per row).
cudaError_t layer_norm(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                       std::uint16_t* y, std::int64_t rows, std::int64_t c, float eps, cudaStream_t stream);

}  // namespace fisedit::kernels
