// Bias + activation and bias + addend passes over fp16 rows, 8 halves at a time (bias_act.cuh).
#include "bias_act.cuh"
#include "launch.cuh"

#include <cuda_fp16.h>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

// Accurate expf/erff (no fast-math): the CPU reference computes these in float too.
template <BiasActivation A>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == BiasActivation::silu) return x / (1.0f + expf(-x));
  if constexpr (A == BiasActivation::gelu) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  if constexpr (A == BiasActivation::quick_gelu) return x / (1.0f + expf(-1.702f * x));
  return x;
}

// Eight halves of a 16-byte vector as floats, and back (round to nearest even).
__device__ __forceinline__ void unpack8(const uint4& raw, float (&f)[8]) {
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 pair = __half22float2(h[j]);
    f[2 * j] = pair.x;
    f[2 * j + 1] = pair.y;
  }
}

__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  uint4 raw;
  __half2* h = reinterpret_cast<__half2*>(&raw);
#pragma unroll
  for (int j = 0; j < 4; ++j) h[j] = __floats2half2_rn(f[2 * j], f[2 * j + 1]);
  return raw;
}

// Eight halves (16 bytes) per step: n % 8 == 0 and both pointers 16-byte aligned.
template <BiasActivation A, bool kBias>
__global__ void bias_activation_vec8(uint4* data, const uint4* bias, std::size_t vectors, std::size_t row_vectors) {
  dependent_prologue();
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < vectors;
       i += std::size_t{gridDim.x} * blockDim.x) {
    float f[8], b[8];
    unpack8(data[i], f);
    if constexpr (kBias) unpack8(bias[i % row_vectors], b);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if constexpr (kBias) f[k] += b[k];
      f[k] = activate<A>(f[k]);
    }
    data[i] = pack8(f);
  }
}

template <BiasActivation A, bool kBias>
__global__ void bias_activation_scalar(__half* data, const __half* bias, std::size_t count, std::size_t n) {
  dependent_prologue();
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < count;
       i += std::size_t{gridDim.x} * blockDim.x) {
    float f = __half2float(data[i]);
    if constexpr (kBias) f += __half2float(bias[i % n]);
    data[i] = __float2half_rn(activate<A>(f));
  }
}


template <BiasActivation A, bool kBias>
void launch(std::uint16_t* data, const std::uint16_t* bias, std::size_t rows, std::size_t n, cudaStream_t stream) {
  const bool aligned = aligned16(data) && (!kBias || aligned16(bias));
  if (n % 8 == 0 && aligned) {
    const std::size_t vectors = rows * n / 8;
    launch_kernel(bias_activation_vec8<A, kBias>, blocks_for(vectors), kThreads, 0, stream,
        reinterpret_cast<uint4*>(data), reinterpret_cast<const uint4*>(bias), vectors, n / 8);
  } else {
    launch_kernel(bias_activation_scalar<A, kBias>, blocks_for(rows * n), kThreads, 0, stream,
        reinterpret_cast<__half*>(data), reinterpret_cast<const __half*>(bias), rows * n, n);
  }
}

template <BiasActivation A>
void launch_act(std::uint16_t* data, const std::uint16_t* bias, std::size_t rows, std::size_t n, cudaStream_t stream) {
  if (bias)
    launch<A, true>(data, bias, rows, n, stream);
  else
    launch<A, false>(data, nullptr, rows, n, stream);
}

template <bool kBias>
__global__ void bias_add_vec8(uint4* data, const uint4* bias, const uint4* addend, std::size_t vectors,
                              std::size_t row_vectors, std::size_t repeat) {
  dependent_prologue();
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < vectors;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const std::size_t row = i / row_vectors, col = i % row_vectors;
    float f[8], a[8], b[8];
    unpack8(data[i], f);
    unpack8(addend[row / repeat * row_vectors + col], a);
    if constexpr (kBias) unpack8(bias[col], b);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      if constexpr (kBias) f[k] += b[k];
      f[k] += a[k];
    }
    data[i] = pack8(f);
  }
}

__global__ void bias_add_scalar(__half* data, const __half* bias, const __half* addend, std::size_t count,
                                std::size_t n, std::size_t repeat) {
  dependent_prologue();
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < count;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const std::size_t row = i / n, col = i % n;
    float f = __half2float(data[i]);
    if (bias) f += __half2float(bias[col]);
    data[i] = __float2half_rn(f + __half2float(addend[row / repeat * n + col]));
  }
}

}  // namespace

cudaError_t bias_add(std::uint16_t* data, const std::uint16_t* bias, const std::uint16_t* addend, std::int64_t rows,
                     std::int64_t n, std::int64_t repeat, cudaStream_t stream) {
  if (rows < 0 || n < 0 || repeat < 1 || !addend) return cudaErrorInvalidValue;
  if (rows == 0 || n == 0) return cudaSuccess;
  const auto r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(n), rep = static_cast<std::size_t>(repeat);
  if (c % 8 == 0 && aligned16(data) && aligned16(addend) && (!bias || aligned16(bias))) {
    const std::size_t vectors = r * c / 8;
    const auto* b = reinterpret_cast<const uint4*>(bias);
    auto* d = reinterpret_cast<uint4*>(data);
    const auto* a = reinterpret_cast<const uint4*>(addend);
    if (bias)
      launch_kernel(bias_add_vec8<true>, blocks_for(vectors), kThreads, 0, stream, d, b, a, vectors, c / 8, rep);
    else
      launch_kernel(bias_add_vec8<false>, blocks_for(vectors), kThreads, 0, stream, d, b, a, vectors, c / 8, rep);
  } else {
    launch_kernel(bias_add_scalar, blocks_for(r * c), kThreads, 0, stream, reinterpret_cast<__half*>(data),
                                                                reinterpret_cast<const __half*>(bias),
                                                                reinterpret_cast<const __half*>(addend), r * c, c, rep);
  }
  return cudaGetLastError();
}

cudaError_t bias_activation(std::uint16_t* data, const std::uint16_t* bias, std::int64_t rows, std::int64_t n,
                            BiasActivation act, cudaStream_t stream) {
  if (rows < 0 || n < 0) return cudaErrorInvalidValue;
  if (rows == 0 || n == 0 || (!bias && act == BiasActivation::none)) return cudaSuccess;
  const auto r = static_cast<std::size_t>(rows), c = static_cast<std::size_t>(n);
  switch (act) {
    case BiasActivation::none: launch_act<BiasActivation::none>(data, bias, r, c, stream); break;
    case BiasActivation::silu: launch_act<BiasActivation::silu>(data, bias, r, c, stream); break;
    case BiasActivation::gelu: launch_act<BiasActivation::gelu>(data, bias, r, c, stream); break;
    case BiasActivation::quick_gelu: launch_act<BiasActivation::quick_gelu>(data, bias, r, c, stream); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
