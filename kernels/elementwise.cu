// Element-wise fp16 kernels (elementwise.cuh): activations, scale, GEGLU, broadcast add and mul.
#include "elementwise.cuh"
#include "half_vector.cuh"
#include "launch.cuh"

#include <cuda_fp16.h>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

__device__ inline float load(const std::uint16_t* p, std::size_t i) { return half_to_float(p[i]); }
__device__ inline void store(std::uint16_t* p, std::size_t i, float v) { p[i] = float_to_half(v); }

// Eight halves at p[8 v] (16-byte aligned) as floats, and back.
__device__ inline void load8(const std::uint16_t* p, std::size_t v, float (&f)[kVec]) { load_halves(p + v * kVec, f); }
__device__ inline void store8(std::uint16_t* p, std::size_t v, const float (&f)[kVec]) { store_halves(p + v * kVec, f); }

// The same formulas as the CPU reference (cpu_kernels.h); expf/erff are the accurate versions
// because fisedit builds without --use_fast_math.
struct Silu {
  __device__ float operator()(float x) const { return x / (1.0f + expf(-x)); }
};
struct Gelu {
  __device__ float operator()(float x) const { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
};
struct QuickGelu {
  __device__ float operator()(float x) const { return x / (1.0f + expf(-1.702f * x)); }
};
struct Scale {
  float s;
  __device__ float operator()(float x) const { return x * s; }
};

// Vectors of 8 first when both pointers allow 16-byte accesses, then the remaining elements one by one.
template <class Op>
__global__ void unary_kernel(const std::uint16_t* x, std::uint16_t* y, std::size_t n, bool vectorised, Op op) {
  dependent_prologue();
  const std::size_t first = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
  const std::size_t stride = std::size_t{gridDim.x} * blockDim.x;
  std::size_t done = 0;
  if (vectorised) {
    const std::size_t vectors = n / kVec;
    for (std::size_t v = first; v < vectors; v += stride) {
      float f[kVec];
      load8(x, v, f);
#pragma unroll
      for (int k = 0; k < kVec; ++k) f[k] = op(f[k]);
      store8(y, v, f);
    }
    done = vectors * kVec;
  }
  for (std::size_t i = done + first; i < n; i += stride) store(y, i, op(load(x, i)));
}

template <class Op>
cudaError_t launch_unary(const std::uint16_t* x, std::uint16_t* y, std::size_t n, Op op, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const bool vectorised = aligned16(x) && aligned16(y);
  launch_kernel(unary_kernel<Op>, blocks_for(vectorised ? n / kVec + n % kVec : n), kThreads, 0, stream, x, y, n, vectorised, op);
  return cudaGetLastError();
}

// x [rows, 2F] -> y [rows, F]. Vectorised when F % 8 == 0: then a vector never straddles a row and
// both halves of the input row start 16-byte aligned.
__global__ void geglu_kernel(const std::uint16_t* x, std::uint16_t* y, std::size_t rows, std::size_t f,
                             bool vectorised) {
  dependent_prologue();
  const std::size_t first = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
  const std::size_t stride = std::size_t{gridDim.x} * blockDim.x;
  const Gelu gelu;
  if (vectorised) {
    for (std::size_t v = first; v < rows * f / kVec; v += stride) {
      const std::size_t i = v * kVec, r = i / f, j = i % f;
      float hidden[kVec], gate[kVec];
      load8(x + r * 2 * f, j / kVec, hidden);
      load8(x + r * 2 * f + f, j / kVec, gate);
#pragma unroll
      for (int k = 0; k < kVec; ++k) hidden[k] *= gelu(gate[k]);
      store8(y, v, hidden);
    }
    return;
  }
  for (std::size_t i = first; i < rows * f; i += stride) {
    const std::size_t r = i / f, j = i % f;
    store(y, i, load(x, r * 2 * f + j) * gelu(load(x, r * 2 * f + f + j)));
  }
}

// b's element for a's flat index i, a being [outer, repeat, inner] and b [outer, inner].
__device__ inline std::size_t broadcast_index(std::size_t i, std::size_t repeat, std::size_t inner) {
  return repeat == 1 ? i : i / (repeat * inner) * inner + i % inner;
}

// Vectorised when inner % 8 == 0: a vector of a then maps onto 8 consecutive, aligned elements of b.
template <bool kMul>
__global__ void binary_kernel(const std::uint16_t* a, const std::uint16_t* b, std::uint16_t* y, std::size_t n,
                              std::size_t repeat, std::size_t inner, bool vectorised) {
  dependent_prologue();
  const std::size_t first = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x;
  const std::size_t stride = std::size_t{gridDim.x} * blockDim.x;
  if (vectorised) {
    for (std::size_t v = first; v < n / kVec; v += stride) {
      float fa[kVec], fb[kVec];
      load8(a, v, fa);
      load8(b, broadcast_index(v * kVec, repeat, inner) / kVec, fb);
#pragma unroll
      for (int k = 0; k < kVec; ++k) fa[k] = kMul ? fa[k] * fb[k] : fa[k] + fb[k];
      store8(y, v, fa);
    }
    return;
  }
  for (std::size_t i = first; i < n; i += stride) {
    const float va = load(a, i), vb = load(b, broadcast_index(i, repeat, inner));
    store(y, i, kMul ? va * vb : va + vb);
  }
}

}  // namespace

cudaError_t unary(UnaryOp op, const std::uint16_t* x, std::uint16_t* y, std::size_t n, cudaStream_t stream) {
  switch (op) {
    case UnaryOp::silu: return launch_unary(x, y, n, Silu{}, stream);
    case UnaryOp::gelu: return launch_unary(x, y, n, Gelu{}, stream);
    case UnaryOp::quick_gelu: return launch_unary(x, y, n, QuickGelu{}, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t scale(const std::uint16_t* x, std::uint16_t* y, std::size_t n, float s, cudaStream_t stream) {
  return launch_unary(x, y, n, Scale{s}, stream);
}

cudaError_t geglu(const std::uint16_t* x, std::uint16_t* y, std::size_t rows, std::size_t f, cudaStream_t stream) {
  const std::size_t n = rows * f;
  if (n == 0) return cudaSuccess;
  const bool vectorised = f % kVec == 0 && aligned16(x) && aligned16(y);
  launch_kernel(geglu_kernel, blocks_for(vectorised ? n / kVec : n), kThreads, 0, stream, x, y, rows, f, vectorised);
  return cudaGetLastError();
}

cudaError_t binary(BinaryOp op, const std::uint16_t* a, const std::uint16_t* b, std::uint16_t* y, std::size_t outer,
                   std::size_t repeat, std::size_t inner, cudaStream_t stream) {
  const std::size_t n = outer * repeat * inner;
  if (n == 0) return cudaSuccess;
  const bool vectorised = inner % kVec == 0 && aligned16(a) && aligned16(b) && aligned16(y);
  const unsigned blocks = blocks_for(vectorised ? n / kVec : n);
  if (op == BinaryOp::mul)
    launch_kernel(binary_kernel<true>, blocks, kThreads, 0, stream, a, b, y, n, repeat, inner, vectorised);
  else
    launch_kernel(binary_kernel<false>, blocks, kThreads, 0, stream, a, b, y, n, repeat, inner, vectorised);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
