#pragma once
// Pieces the CPU backend's op files share: activation functions and GEMM calls.
#include "backend/backend.h"
#include "backend/cpu/thread_pool.h"

#include <cassert>
#include <cmath>
#include <cstdint>
#include <limits>

namespace fisedit::cpu {

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f)); }
inline float quick_gelu(float x) { return x / (1.0f + std::exp(-1.702f * x)); }

// In place over n contiguous values; the switch stays outside the loops so they vectorise.
inline void apply_activation(float* p, std::int64_t n, Activation act) {
  switch (act) {
    case Activation::none: return;
    case Activation::silu:
      for (std::int64_t i = 0; i < n; ++i) p[i] = silu(p[i]);
      return;
    case Activation::gelu:
      for (std::int64_t i = 0; i < n; ++i) p[i] = gelu(p[i]);
      return;
    case Activation::quick_gelu:
      for (std::int64_t i = 0; i < n; ++i) p[i] = quick_gelu(p[i]);
      return;
  }
}

// A GroupNorm of one image as a per-channel affine map, y = x * scale + shift, from its groups'
// mean and (biased) variance: what group_norm applies, and a sparse convolution's gather with it.
void group_norm_affine(const float* gamma, const float* beta, std::int64_t channels, int groups, float eps,
                       const float* mean, const float* var, float* scale, float* shift);

// BLAS takes int dimensions; activations of SD-sized models stay far below 2^31 per dimension.
inline int blas_int(std::int64_t v) {
  assert(v >= 0 && v <= std::numeric_limits<int>::max());
  return static_cast<int>(v);
}

// C[M, N] = alpha * A[M, K] . B[N, K]^T + beta * C (row-major, leading dimensions given), on the
// calling thread.
void gemm_nt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
             const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);
// C[M, N] = alpha * A[M, K] . B[K, N] + beta * C.
void gemm_nn(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
             const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);
// gemm_nt with beta = 0, split over the pool by rows of C (or by columns when C has few rows).
void parallel_gemm_nt(ThreadPool& pool, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                      std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc);

}  // namespace fisedit::cpu
