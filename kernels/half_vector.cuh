#pragma once
// fp16 <-> float in registers for the kernels: one half, or kWidth halves in one 16-byte access (the
// vector loads and stores every fp16 kernel uses on channels-last rows).
#include <cuda_fp16.h>

#include <cstdint>

namespace fisedit::kernels {

__device__ inline float half_to_float(std::uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
__device__ inline std::uint16_t float_to_half(float v) { return __half_as_ushort(__float2half_rn(v)); }

// kWidth halves at p as floats: kWidth 8 reads one 16-byte vector (p 16-byte aligned), 1 a scalar.
template <int kWidth = 8>
__device__ inline void load_halves(const std::uint16_t* p, float (&f)[kWidth]) {
  static_assert(kWidth == 1 || kWidth == 8, "one half or a 16-byte vector of eight");
  if constexpr (kWidth == 1) {
    f[0] = half_to_float(*p);
  } else {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int k = 0; k < kWidth / 2; ++k) {
      const float2 pair = __half22float2(h[k]);
      f[2 * k] = pair.x;
      f[2 * k + 1] = pair.y;
    }
  }
}

// The inverse of load_halves, rounding to nearest.
template <int kWidth = 8>
__device__ inline void store_halves(std::uint16_t* p, const float (&f)[kWidth]) {
  static_assert(kWidth == 1 || kWidth == 8, "one half or a 16-byte vector of eight");
  if constexpr (kWidth == 1) {
    *p = float_to_half(f[0]);
  } else {
    uint4 raw;
    __half2* h = reinterpret_cast<__half2*>(&raw);
#pragma unroll
    for (int k = 0; k < kWidth / 2; ++k) h[k] = __floats2half2_rn(f[2 * k], f[2 * k + 1]);
    *reinterpret_cast<uint4*>(p) = raw;
  }
}

}  // namespace fisedit::kernels
