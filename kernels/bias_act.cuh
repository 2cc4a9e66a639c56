#pragma once
// Bias and activation over the rows of a matrix, in place: what follows a GEMM or a convolution where
// the library cannot fuse it exactly. cuBLASLt's GELU epilogue is the tanh approximation while the
// engine's GELU is erf-exact, and cuDNN's bias add is one more pass anyway. fp16 storage, float math.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

enum class BiasActivation {
  none,
  silu,        // x * sigmoid(x)
  gelu,        // 0.5 x (1 + erf(x / sqrt 2))
  quick_gelu,  // x * sigmoid(1.702 x)
};

// data [rows, n] (IEEE half bits) += bias[n] (skipped when bias is null), then `act`, in place.
cudaError_t bias_activation(std::uint16_t* data, const std::uint16_t* bias, std::int64_t rows, std::int64_t n,
                            BiasActivation act, cudaStream_t stream);

// data [rows, n] += bias[n] (skipped when null) + addend[row / repeat, n], in place, in float with one
// rounding: the bias pass after a convolution with a residual connection (repeat 1) or a time
// embedding (repeat = positions per sample) folded in.
cudaError_t bias_add(std::uint16_t* data, const std::uint16_t* bias, const std::uint16_t* addend, std::int64_t rows,
                     std::int64_t n, std::int64_t repeat, cudaStream_t stream);

}  // namespace fisedit::kernels
