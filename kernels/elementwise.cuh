#pragma once
// Element-wise fp16 ops with float math: activations, scaling, GEGLU and broadcast add/mul.
// Tensors are IEEE half bits (as in convert.cuh), contiguous; outputs never alias inputs.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

enum class UnaryOp {
  silu,        // x * sigmoid(x)
  gelu,        // 0.5 x (1 + erf(x / sqrt 2))
  quick_gelu,  // x * sigmoid(1.702 x)
};

// y[i] = op(x[i]), n elements.
cudaError_t unary(UnaryOp op, const std::uint16_t* x, std::uint16_t* y, std::size_t n, cudaStream_t stream);

// y[i] = x[i] * s, n elements.
cudaError_t scale(const std::uint16_t* x, std::uint16_t* y, std::size_t n, float s, cudaStream_t stream);

// x [rows, 2F] -> y [rows, F]: x[:, :F] * gelu(x[:, F:]).
cudaError_t geglu(const std::uint16_t* x, std::uint16_t* y, std::size_t rows, std::size_t f, cudaStream_t stream);

enum class BinaryOp { add, mul };

// a viewed as [outer, repeat, inner], b as [outer, inner]: y[o, r, i] = a[o, r, i] op b[o, i].
cudaError_t binary(BinaryOp op, const std::uint16_t* a, const std::uint16_t* b, std::uint16_t* y, std::size_t outer,
                   std::size_t repeat, std::size_t inner, cudaStream_t stream);

}  // namespace fisedit::kernels
