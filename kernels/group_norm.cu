// GroupNorm kernels (group_norm.cuh): statistics (Welford, merged by Chan's formula), then the affine apply.
#include "group_norm.cuh"
#include "group_norm_affine.cuh"
#include "half_vector.cuh"
#include "launch.cuh"

#include <cuda_fp16.h>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 4;  // rows a row-layout thread loads at once
// Elements one statistics block reduces: enough work per block, and enough blocks to fill the GPU
// when N * G is small (SD: 2 x 32).
constexpr std::int64_t kElementsPerBlock = 16384;


std::int64_t positions_per_block(const GroupNormShape& s) {
  const std::int64_t per_group = s.c / s.groups;
  return per_group > 0 && kElementsPerBlock / per_group > 0 ? kElementsPerBlock / per_group : 1;
}

std::int64_t blocks_per_group(const GroupNormShape& s) {
  const std::int64_t positions = positions_per_block(s);
  return (s.l + positions - 1) / positions;
}

__device__ inline float load(const std::uint16_t* p) { return half_to_float(*p); }


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
  dependent_prologue();
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
      load_halves(src, f);
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
  dependent_prologue();
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

// y [N, L, C] from x one element at a time: the fallback for odd channel counts or alignments.
__global__ void apply_scalar_kernel(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                                    const float* mean, const float* var, std::uint16_t* y, std::int64_t n,
                                    std::int64_t l, std::int64_t c, std::int64_t per_group, int groups, float eps,
                                    bool silu) {
  dependent_prologue();
  const std::int64_t total = n * l * c;
  for (std::int64_t e = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; e < total;
       e += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t j = e % c, b = e / (l * c);
    float scale, shift;
    channel_affine(mean, var, load(gamma + j), load(beta + j), b * groups + j / per_group, eps, scale, shift);
    y[e] = __half_as_ushort(__float2half_rn(finish(load(x + e), scale, shift, silu)));
  }
}

// Row layout shared by the vectorised kernels: a block is `rows` x `cols` threads, cols = C / 8; a
// thread owns 8 channels of a row and walks down the positions, so a warp reads whole rows
// (coalesced 16-byte loads) and a thread's per-channel constants are computed once.
struct RowLayout {
  int cols = 0, rows = 0;
  int threads() const { return cols * rows; }
};
// Channels a row-layout kernel handles at most (shared memory of the statistics reduction).
constexpr std::int64_t kMaxRowChannels = 4096;

RowLayout row_layout(std::int64_t c) {
  RowLayout r;
  r.cols = static_cast<int>(c / kVec);
  r.rows = r.cols >= kThreads ? 1 : kThreads / r.cols;
  return r;
}

// Positions per block: enough blocks to fill the GPU (~1024 in all), each walking at least 8 rows.
std::int64_t chunk_positions(std::int64_t n, std::int64_t l, const RowLayout& r) {
  const std::int64_t target_chunks = n >= 1024 ? 1 : 1024 / n;
  const std::int64_t minimum = 8 * std::int64_t{r.rows};
  const std::int64_t want = (l + target_chunks - 1) / target_chunks;
  return want > minimum ? (want + r.rows - 1) / r.rows * r.rows : minimum;
}


// Block (chunk, b): y at positions [chunk * positions, +positions) of sample b.
__global__ void apply_rows_kernel(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                                  const float* mean, const float* var, std::uint16_t* y, std::int64_t l,
                                  std::int64_t c, std::int64_t per_group, int groups, std::int64_t positions,
                                  float eps, bool silu) {
  dependent_prologue();
  const int cols = static_cast<int>(c / kVec), col = threadIdx.x % cols, row = threadIdx.x / cols;
  const int rows = blockDim.x / cols;
  const std::int64_t b = blockIdx.y, p0 = blockIdx.x * positions;
  const std::int64_t p1 = p0 + positions < l ? p0 + positions : l;
  float g[kVec], bt[kVec], scale[kVec], shift[kVec];
  load_halves(gamma + col * kVec, g);
  load_halves(beta + col * kVec, bt);
#pragma unroll
  for (int k = 0; k < kVec; ++k)
    channel_affine(mean, var, g[k], bt[k], b * groups + (col * kVec + k) / per_group, eps, scale[k], shift[k]);
  const std::int64_t offset = b * l * c + col * kVec;
  // kUnroll rows per pass, their loads issued together: one 16-byte load in flight per thread
  // leaves too few bytes in flight to reach the memory's bandwidth.
  std::int64_t p = p0 + row;
  for (; p + (kUnroll - 1) * rows < p1; p += kUnroll * rows) {
    float v[kUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) load_halves(x + offset + (p + u * rows) * c, v[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[u][k] = finish(v[u][k], scale[k], shift[k], silu);
      store_halves(y + offset + (p + u * rows) * c, v[u]);
    }
  }
  for (; p < p1; p += rows) {
    float v[kVec];
    load_halves(x + offset + p * c, v);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = finish(v[k], scale[k], shift[k], silu);
    store_halves(y + offset + p * c, v);
  }
}

// Block (chunk, b): per channel, the mean and sum of squared deviations of x over the chunk's
// positions -> partial [N, chunks, C, 2]. Sums run on values shifted by the chunk's first row (the
// same shift for every thread of a channel, so their sums add exactly; the shift keeps the sum of
// squares from cancelling when the mean is large against the spread).
__global__ void stats_rows_kernel(const std::uint16_t* x, std::int64_t l, std::int64_t c, std::int64_t positions,
                                  float* partial) {
  dependent_prologue();
  extern __shared__ float sums[];  // [2][rows][C]
  const int cols = static_cast<int>(c / kVec), col = threadIdx.x % cols, row = threadIdx.x / cols;
  const int rows = blockDim.x / cols;
  const std::int64_t b = blockIdx.y, chunk = blockIdx.x, p0 = chunk * positions;
  const std::int64_t p1 = p0 + positions < l ? p0 + positions : l;
  const std::uint16_t* base = x + b * l * c + col * kVec;
  float shift[kVec], s[kVec] = {}, q[kVec] = {};
  load_halves(base + p0 * c, shift);
  const auto accumulate = [&](const float (&v)[kVec]) {
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      const float d = v[k] - shift[k];
      s[k] += d;
      q[k] = __fmaf_rn(d, d, q[k]);
    }
  };
  std::int64_t p = p0 + row;
  for (; p + (kUnroll - 1) * rows < p1; p += kUnroll * rows) {  // loads issued together, as in apply
    float v[kUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) load_halves(base + (p + u * rows) * c, v[u]);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) accumulate(v[u]);
  }
  for (; p < p1; p += rows) {
    float v[kVec];
    load_halves(base + p * c, v);
    accumulate(v);
  }
  float* s_sum = sums;
  float* q_sum = sums + std::int64_t{rows} * c;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    s_sum[row * c + col * kVec + k] = s[k];
    q_sum[row * c + col * kVec + k] = q[k];
  }
  __syncthreads();
  if (row != 0) return;
  const float count = static_cast<float>(p1 - p0);
  float* out = partial + ((b * gridDim.x + chunk) * c + col * kVec) * 2;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    float ss = 0.0f, qq = 0.0f;
    for (int r = 0; r < rows; ++r) {
      ss += s_sum[r * c + col * kVec + k];
      qq += q_sum[r * c + col * kVec + k];
    }
    const float d = ss / count;
    out[2 * k] = shift[k] + d;
    out[2 * k + 1] = fmaxf(qq - ss * d, 0.0f);
  }
}

// Block (b, g): merges the per-channel partial moments of the group's channels over all chunks.
__global__ void finalize_rows_kernel(const float* partial, std::int64_t l, std::int64_t c, std::int64_t per_group,
                                     std::int64_t chunks, std::int64_t positions, float* mean, float* var) {
  dependent_prologue();
  const std::int64_t set = blockIdx.x, groups = c / per_group, b = set / groups, g = set % groups;
  Moments m{0.0f, 0.0f, 0.0f};
  for (std::int64_t i = threadIdx.x; i < chunks * per_group; i += blockDim.x) {
    const std::int64_t chunk = i / per_group, ch = g * per_group + i % per_group;
    const std::int64_t p0 = chunk * positions, count = p0 + positions < l ? positions : l - p0;
    const float* p = partial + ((b * chunks + chunk) * c + ch) * 2;
    m = merge(m, Moments{static_cast<float>(count), p[0], p[1]});
  }
  m = block_merge(m);
  if (threadIdx.x == 0) {
    mean[set] = m.mean;
    var[set] = m.count > 0.0f ? fmaxf(m.m2 / m.count, 0.0f) : 0.0f;
  }
}

// Whether the row-layout kernels take a tensor of C channels at address x.
bool rows_path(std::int64_t c, const void* x) { return c % kVec == 0 && c <= kMaxRowChannels && aligned16(x); }

std::int64_t row_chunks(const GroupNormShape& s) {
  const std::int64_t positions = chunk_positions(s.n, s.l, row_layout(s.c));
  return (s.l + positions - 1) / positions;
}

}  // namespace

std::size_t group_norm_workspace_bytes(const GroupNormShape& shape) {
  // Enough for either statistics path (the row path is picked by the tensor's address too).
  const auto rows = shape.c % kVec == 0 && shape.c <= kMaxRowChannels
                        ? static_cast<std::size_t>(shape.n * row_chunks(shape) * shape.c) * 2
                        : std::size_t{0};
  const auto groups = static_cast<std::size_t>(shape.n * shape.groups * blocks_per_group(shape)) * 3;
  return (rows > groups ? rows : groups) * sizeof(float);
}

cudaError_t group_norm_stats(const std::uint16_t* x, const GroupNormShape& shape, float* workspace, float* mean,
                             float* var, cudaStream_t stream) {
  if (shape.n > 65535 || shape.groups > 65535) return cudaErrorInvalidValue;
  const std::int64_t sets = shape.n * shape.groups, per_group = shape.c / shape.groups;
  if (sets == 0 || shape.l == 0) return cudaSuccess;
  if (rows_path(shape.c, x)) {
    const RowLayout layout = row_layout(shape.c);
    const std::int64_t positions = chunk_positions(shape.n, shape.l, layout), chunks = row_chunks(shape);
    const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(shape.n));
    const std::size_t shared = 2 * static_cast<std::size_t>(layout.rows * shape.c) * sizeof(float);
    launch_kernel(stats_rows_kernel, grid, layout.threads(), shared, stream, x, shape.l, shape.c, positions, workspace);
    if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess) return status;
    launch_kernel(finalize_rows_kernel, static_cast<unsigned>(sets), kThreads, 0, stream, workspace, shape.l, shape.c, per_group,
                                                                              chunks, positions, mean, var);
    return cudaGetLastError();
  }
  const std::int64_t blocks = blocks_per_group(shape), positions = positions_per_block(shape);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(shape.groups), static_cast<unsigned>(shape.n));
  if (per_group % kVec == 0 && aligned16(x))
    launch_kernel(stats_kernel<kVec>, grid, kThreads, 0, stream, x, shape.l, shape.c, per_group, positions, workspace);
  else
    launch_kernel(stats_kernel<1>, grid, kThreads, 0, stream, x, shape.l, shape.c, per_group, positions, workspace);
  if (const cudaError_t status = cudaGetLastError(); status != cudaSuccess) return status;
  launch_kernel(finalize_kernel, static_cast<unsigned>((sets + kThreads - 1) / kThreads), kThreads, 0, stream, workspace, sets,
                                                                                                     blocks, mean, var);
  return cudaGetLastError();
}

cudaError_t group_norm_apply(const std::uint16_t* x, const std::uint16_t* gamma, const std::uint16_t* beta,
                             const float* mean, const float* var, std::uint16_t* y, const GroupNormShape& shape,
                             float eps, bool silu, cudaStream_t stream) {
  const std::int64_t total = shape.n * shape.l * shape.c, per_group = shape.c / shape.groups;
  if (total == 0) return cudaSuccess;
  if (shape.n > 65535) return cudaErrorInvalidValue;
  if (rows_path(shape.c, x) && aligned16(y) && aligned16(gamma) && aligned16(beta)) {
    const RowLayout layout = row_layout(shape.c);
    const std::int64_t positions = chunk_positions(shape.n, shape.l, layout);
    const dim3 grid(static_cast<unsigned>((shape.l + positions - 1) / positions), static_cast<unsigned>(shape.n));
    launch_kernel(apply_rows_kernel, grid, layout.threads(), 0, stream, x, gamma, beta, mean, var, y, shape.l, shape.c,
                                                             per_group, shape.groups, positions, eps, silu);
    return cudaGetLastError();
  }
  const auto blocks = static_cast<unsigned>(total / kThreads + 1 < 65535 ? total / kThreads + 1 : 65535);
  launch_kernel(apply_scalar_kernel, blocks, kThreads, 0, stream, x, gamma, beta, mean, var, y, shape.n, shape.l, shape.c,
                                                       per_group, shape.groups, eps, silu);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
