#include "group_norm.cuh"

#include <cuda_fp16.h>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // halves per 16-byte access
// Elements one statistics block reduces: enough work per block, and enough blocks to fill the GPU
// when N * G is small (SD: 2 x 32).
constexpr std::int64_t kElementsPerBlock = 16384;

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

std::int64_t positions_per_block(const GroupNormShape& s) {
  const std::int64_t per_group = s.c / s.groups;
  return per_group > 0 && kElementsPerBlock / per_group > 0 ? kElementsPerBlock / per_group : 1;
}

std::int64_t blocks_per_group(const GroupNormShape& s) {
  const std::int64_t positions = positions_per_block(s);
  return (s.l + positions - 1) / positions;
}

__device__ inline float load(const std::uint16_t* p) { return __half2float(__ushort_as_half(*p)); }

// Eight halves at a 16-byte aligned p, as floats.
__device__ inline void load8(const std::uint16_t* p, float (&f)[kVec]) {
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int k = 0; k < kVec / 2; ++k) {
    const float2 pair = __half22float2(h[k]);
    f[2 * k] = pair.x;
    f[2 * k + 1] = pair.y;
  }
}

// Count, mean and sum of squared deviations of a set of values.
struct Moments {
  float count, mean, m2;
};

__device__ inline void push(Moments& m, float v) {  // Welford
  m.count += 1.0f;
  const float d = v - m.mean;
  m.mean += d / m.count;
  m.m2 += d * (v - m.mean);
}

__device__ inline Moments merge(const Moments& a, const Moments& b) {  // Chan et al.
  if (b.count == 0.0f) return a;
  if (a.count == 0.0f) return b;
  const float count = a.count + b.count, delta = b.mean - a.mean, wb = b.count / count;
  return {count, a.mean + delta * wb, a.m2 + b.m2 + delta * delta * a.count * wb};
}

__device__ inline Moments warp_merge(Moments m) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    const Moments other{__shfl_down_sync(0xffffffffu, m.count, offset), __shfl_down_sync(0xffffffffu, m.mean, offset),
                        __shfl_down_sync(0xffffffffu, m.m2, offset)};
    m = merge(m, other);
  }
  return m;
}

// The block's moments, valid in thread 0.
__device__ inline Moments block_merge(Moments m) {
  __shared__ Moments warps[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  m = warp_merge(m);
  if (lane == 0) warps[warp] = m;
  __syncthreads();
  if (warp == 0) m = warp_merge(lane < kThreads / 32 ? warps[lane] : Moments{0.0f, 0.0f, 0.0f});
  return m;
}

// Block (chunk, g, b): the moments of x[b, chunk's positions, g's channels] -> partial[b, g, chunk].
// kWidth = 8 when a group's channels come in aligned runs of 8 (C / G % 8 == 0).
template <int kWidth>
__global__ void stats_kernel(const std::uint16_t* x, std::int64_t l, std::int64_t c, std::int64_t per_group,
                             std::int64_t positions, float* partial) {
  const std::int64_t chunk = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
  const std::int64_t p0 = chunk * positions, p1 = p0 + positions < l ? p0 + positions : l;
  const std::int64_t runs = per_group / kWidth;  // per position
  const std::uint16_t* base = x + b * l * c + g * per_group;
  Moments m{0.0f, 0.0f, 0.0f};
  for (std::int64_t e = threadIdx.x; e < (p1 - p0) * runs; e += blockDim.x) {
    const std::uint16_t* src = base + (p0 + e / runs) * c + e % runs * kWidth;
    if constexpr (kWidth == 1) {
      push(m, load(src));
    } else {
      float f[kVec];
      load8(src, f);
#pragma unroll
      for (int k = 0; k < kVec; ++k) push(m, f[k]);
    }
  }
  m = block_merge(m);
  if (threadIdx.x == 0) {
    float* out = partial + ((b * gridDim.y + g) * gridDim.x + chunk) * 3;
    out[0] = m.count;
    out[1] = m.mean;
    out[2] = m.m2;
  }
}

// partial [S, blocks, 3] -> mean, var [S], one thread per (b, g).
__global__ void finalize_kernel(const float* partial, std::int64_t sets, std::int64_t blocks, float* mean,
                                float* var) {
  const std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  if (i >= sets) return;
  Moments m{0.0f, 0.0f, 0.0f};
  for (std::int64_t k = 0; k < blocks; ++k) {
    const float* p = partial + (i * blocks + k) * 3;
    m = merge(m, Moments{p[0], p[1], p[2]});
  }
  mean[i] = m.mean;
  var[i] = m.count > 0.0f ? fmaxf(m.m2 / m.count, 0.0f) : 0.0f;
}

// y [N, L, C] from x, kWidth channels per thread (8 when C % 8 == 0 and every pointer is aligned).
template <int kWidth>
__global__ void apply_kernel(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                             const float* mean, const float* var, std::uint16_t* y, std::int64_t n, std::int64_t l,
                             std::int64_t c, std::int64_t per_group, int groups, float eps, bool silu) {
  const std::int64_t runs = n * l * c / kWidth;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < runs;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t e = i * kWidth, j0 = e % c, b = e / (l * c);
    float v[kWidth], g[kWidth], bt[kWidth];
    if constexpr (kWidth == 1) {
      v[0] = load(x + e);
      g[0] = load(gamma + j0);
      bt[0] = load(beta + j0);
    } else {
      load8(x + e, v);
      load8(gamma + j0, g);
      load8(beta + j0, bt);
    }
#pragma unroll
    for (int k = 0; k < kWidth; ++k) {
      // Channels and groups fit in 32 bits; 64-bit division costs several times more per element.
      const std::int64_t s = b * groups + static_cast<int>(j0 + k) / static_cast<int>(per_group);
      float r = (v[k] - mean[s]) * rsqrtf(var[s] + eps) * g[k] + bt[k];
      if (silu) r = r / (1.0f + expf(-r));
      v[k] = r;
    }
    if constexpr (kWidth == 1) {
      y[e] = __half_as_ushort(__float2half_rn(v[0]));
    } else {
      uint4 raw;
      __half2* h = reinterpret_cast<__half2*>(&raw);
#pragma unroll
      for (int k = 0; k < kWidth / 2; ++k) h[k] = __floats2half2_rn(v[2 * k], v[2 * k + 1]);
      *reinterpret_cast<uint4*>(y + e) = raw;
    }
  }
}

}  // namespace

std::size_t group_norm_workspace_bytes(const GroupNormShape& shape) {
  return static_cast<std::size_t>(shape.n * shape.groups * blocks_per_group(shape)) * 3 * sizeof(float);
}

cudaError_t group_norm_stats(const std::uint16_t* x, const GroupNormShape& shape, float* workspace, float* mean,
                             float* var, cudaStream_t stream) {
  if (shape.n > 65535 || shape.groups > 65535) return cudaErrorInvalidValue;
  const std::int64_t sets = shape.n * shape.groups, blocks = blocks_per_group(shape);
  if (sets == 0 || blocks == 0) return cudaSuccess;
  const std::int64_t per_group = shape.c / shape.groups, positions = positions_per_block(shape);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(shape.groups), static_cast<unsigned>(shape.n));
  if (per_group % kVec == 0 && aligned16(x))
    stats_kernel<kVec><<<grid, kThreads, 0, stream>>>(x, shape.l, shape.c, per_group, positions, workspace);
  else
    stats_kernel<1><<<grid, kThreads, 0, stream>>>(x, shape.l, shape.c, per_group, positions, workspace);
  if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess) return status;
  finalize_kernel<<<static_cast<unsigned>((sets + kThreads - 1) / kThreads), kThreads, 0, stream>>>(workspace, sets,
                                                                                                     blocks, mean, var);
  return cudaGetLastError();
}

cudaError_t group_norm_apply(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                             const float* mean, const float* var, std::uint16_t* y, const GroupNormShape& shape,
                             float eps, bool silu, cudaStream_t stream) {
  const std::int64_t total = shape.n * shape.l * shape.c, per_group = shape.c / shape.groups;
  if (total == 0) return cudaSuccess;
  const bool vectorised =
      shape.c % kVec == 0 && aligned16(x) && aligned16(y) && aligned16(gamma) && aligned16(beta);
  const std::int64_t runs = vectorised ? total / kVec : total;
  const auto blocks = static_cast<unsigned>(runs / kThreads + 1 < 65535 ? runs / kThreads + 1 : 65535);
  if (vectorised)
    apply_kernel<kVec><<<blocks, kThreads, 0, stream>>>(x, gamma, beta, mean, var, y, shape.n, shape.l, shape.c,
                                                        per_group, shape.groups, eps, silu);
  else
    apply_kernel<1><<<blocks, kThreads, 0, stream>>>(x, gamma, beta, mean, var, y, shape.n, shape.l, shape.c,
                                                     per_group, shape.groups, eps, silu);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
