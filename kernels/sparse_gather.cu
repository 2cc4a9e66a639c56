// Sparse execution's data movement (sparse_gather.cuh): row gather, scatter and merge, im2col at positions.
#include "sparse_gather.cuh"
#include "group_norm_affine.cuh"
#include "launch.cuh"

#include "core/env.h"

#include <algorithm>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(std::int64_t items) { return blocks_for(static_cast<std::size_t>(items), kThreads, 65535 * 16); }

// Rows moved in units of T: one half, or 8 halves (uint4) when channels are a multiple of 8 and both
// pointers are 16-byte aligned. Sparse steps run this on every layer; one half per thread left it
// bound by index arithmetic.
// The grid's x blocks stride over one move's units.
enum class Move { gather, scatter, copy };  // compact from full, full from compact, full from full

template <Move kMove, typename T>
__device__ void move_rows_units(const RowsParams& p) {
  const std::int64_t units = p.channels * static_cast<std::int64_t>(sizeof(__half)) / sizeof(T);
  const std::int64_t total = p.batch * p.count * units;
  const auto* src = reinterpret_cast<const T*>(p.src);
  auto* dst = reinterpret_cast<T*>(p.dst);
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t c = i % units, row = i / units;
    const std::int64_t b = row / p.count, k = row % p.count;
    const std::int64_t full = (b * p.length + p.positions[k]) * units + c;
    if constexpr (kMove == Move::scatter)
      dst[full] = src[i];
    else if constexpr (kMove == Move::gather)
      dst[i] = src[full];
    else
      dst[full] = src[full];
  }
}

template <Move kMove, typename T>
__global__ void rows_kernel(RowsParams p) {
  dependent_prologue();
  move_rows_units<kMove, T>(p);
}

struct RowsSpans {
  RowsParams span[kRowsSpansPerLaunch];
};

// blockIdx.y picks the span; the x blocks stride over its 8-half vectors.
template <Move kMove>
__global__ void batched_rows_kernel(const RowsSpans spans) {
  dependent_prologue();
  move_rows_units<kMove, uint4>(spans.span[blockIdx.y]);
}

// The gather's GroupNorm of channel c of image b as (scale, shift): channel_affine's.
__device__ inline float2 norm_affine(const Im2colNorm& n, std::int64_t b, std::int64_t c, std::int64_t cin) {
  float scale, shift;
  channel_affine(n.mean, n.var, __half2float(n.gamma[c]), __half2float(n.beta[c]), b * n.groups + c / (cin / n.groups),
                 n.eps, scale, shift);
  return make_float2(scale, shift);
}

// Input value v of channel c of image b through the gather's GroupNorm.
__device__ inline __half normalised(const Im2colNorm& n, __half v, std::int64_t b, std::int64_t c, std::int64_t cin) {
  const float2 a = norm_affine(n, b, c, cin);
  return __float2half_rn(finish(__half2float(v), a.x, a.y, n.silu));
}

__global__ void im2col_kernel(Im2colParams p) {
  dependent_prologue();
  const std::int64_t row_width = std::int64_t{p.kh} * p.kw * p.cin_padded;
  const std::int64_t total = p.rows * row_width;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = p.first_row + i / row_width, col = i % row_width;
    const std::int64_t c = col % p.cin_padded, tap = col / p.cin_padded;
    const std::int64_t b = row / p.count, position = p.positions ? p.positions[row % p.count] : row % p.count;
    const std::int64_t iy = position / p.out_w * p.stride - p.pad_top + tap / p.kw;
    const std::int64_t ix = position % p.out_w * p.stride - p.pad_left + tap % p.kw;
    const bool inside = c < p.cin && iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
    if (!inside) {
      p.columns[i] = __float2half(0.0f);
      continue;
    }
    const std::int64_t pixel = (b * p.h + iy) * p.w + ix, first = p.cin - p.cin_appended;
    const __half v = c < first ? p.x[pixel * first + c] : p.appended[pixel * p.cin_appended + (c - first)];
    p.columns[i] = p.norm.gamma ? normalised(p.norm, v, b, c, p.cin) : v;
  }
}

// One thread per 8 channels of one tap: cin a multiple of 8 (so no padding channels), x and columns
// aligned. Index is the type of the index arithmetic: 32 bits when every index fits (a sparse step's
// gathers always do), whose divisions cost a fraction of 64-bit ones; they were most of this kernel's
// time (ncu, H100: 8.7 us per call, 65 calls in a 5% SD2 768 step).
// kNorm: the input's GroupNorm applied (p.norm), per value. A table of every (image, channel)'s scale
// and shift made per block in shared memory was tried (2026-12-07) and measured slower: each block
// made the whole table for the few vectors it gathers (H100, the replayed 5% SD2 step 3.17 -> 3.41 ms).
template <typename Index, bool kNorm>
__global__ void im2col_kernel_vec8(Im2colParams p) {
  dependent_prologue();
  const auto vectors = static_cast<Index>(p.cin / 8);
  const auto appended_vectors = static_cast<Index>(p.cin_appended / 8), own_vectors = vectors - appended_vectors;
  const Index kw = p.kw, row_vectors = static_cast<Index>(p.kh) * kw * vectors;
  const Index total = static_cast<Index>(p.rows) * row_vectors, count = static_cast<Index>(p.count);
  const Index out_w = static_cast<Index>(p.out_w), first = static_cast<Index>(p.first_row);
  const auto* x = reinterpret_cast<const uint4*>(p.x);
  auto* columns = reinterpret_cast<uint4*>(p.columns);
  for (Index i = blockIdx.x * Index{blockDim.x} + threadIdx.x; i < total; i += Index{gridDim.x} * blockDim.x) {
    const Index r = i / row_vectors, col = i - r * row_vectors;
    const Index tap = col / vectors, c = col - tap * vectors;
    const Index row = first + r, b = row / count, k = row - b * count;
    const Index position = p.positions ? static_cast<Index>(p.positions[k]) : k;
    const Index oy = position / out_w, ox = position - oy * out_w, ty = tap / kw, tx = tap - ty * kw;
    const auto iy = static_cast<std::int64_t>(oy) * p.stride - p.pad_top + ty;
    const auto ix = static_cast<std::int64_t>(ox) * p.stride - p.pad_left + tx;
    const bool inside = iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
    if (!inside) {
      columns[i] = uint4{0u, 0u, 0u, 0u};
      continue;
    }
    const Index pixel = (static_cast<Index>(b) * static_cast<Index>(p.h) + static_cast<Index>(iy)) * static_cast<Index>(p.w) +
                        static_cast<Index>(ix);
    uint4 v = c < own_vectors ? x[pixel * own_vectors + c]
                              : reinterpret_cast<const uint4*>(p.appended)[pixel * appended_vectors + (c - own_vectors)];
    if constexpr (kNorm) {
      auto* h = reinterpret_cast<__half*>(&v);
      for (int e = 0; e < 8; ++e) h[e] = normalised(p.norm, h[e], b, c * 8 + e, p.cin);
    }
    columns[i] = v;
  }
}

template <typename Index>
void launch_im2col_vec8(const Im2colParams& p, std::int64_t vectors, cudaStream_t stream) {
  if (p.norm.gamma)
    launch_kernel(im2col_kernel_vec8<Index, true>, grid_for(vectors), kThreads, 0, stream, p);
  else
    launch_kernel(im2col_kernel_vec8<Index, false>, grid_for(vectors), kThreads, 0, stream, p);
}

// Row l's row in values, or -1: positions ascending.
__device__ inline std::int64_t find_row(const MergeRowsParams& p, std::int64_t l) {
  if (p.inverse) return p.inverse[l];
  std::int64_t lo = 0, hi = p.count;  // first position >= l
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (p.positions[mid] < l)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < p.count && p.positions[lo] == l ? lo : -1;
}

__global__ void merge_rows_kernel(MergeRowsParams p) {
  dependent_prologue();
  const std::int64_t vectors = p.channels / 8, total = p.batch * p.length * vectors;
  const auto* base = reinterpret_cast<const uint4*>(p.base);
  const auto* values = reinterpret_cast<const uint4*>(p.values);
  const auto* addend = reinterpret_cast<const uint4*>(p.addend);
  auto* dst = reinterpret_cast<uint4*>(p.dst);
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t c = i % vectors, row = i / vectors;
    const std::int64_t b = row / p.length, slot = find_row(p, row % p.length);
    if (slot < 0) {
      dst[i] = base[i];
      continue;
    }
    uint4 v = values[(b * p.count + slot) * vectors + c];
    if (addend) {  // in float, rounded once, as the add kernel does
      uint4 a = addend[(p.addend_per_image ? b : b * p.count + slot) * vectors + c];
      auto* vh = reinterpret_cast<__half2*>(&v);
      const auto* ah = reinterpret_cast<const __half2*>(&a);
      for (int k = 0; k < 4; ++k) {
        const float2 x = __half22float2(vh[k]), y = __half22float2(ah[k]);
        vh[k] = __floats2half2_rn(x.x + y.x, x.y + y.y);
      }
    }
    dst[i] = v;
  }
}

// merge_rows with dst == base: only the active rows are written (their values, plus the addend).
__global__ void merge_rows_in_place_kernel(MergeRowsParams p) {
  dependent_prologue();
  const std::int64_t vectors = p.channels / 8, total = p.batch * p.count * vectors;
  const auto* values = reinterpret_cast<const uint4*>(p.values);
  const auto* addend = reinterpret_cast<const uint4*>(p.addend);
  auto* dst = reinterpret_cast<uint4*>(p.dst);
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t c = i % vectors, row = i / vectors, b = row / p.count, slot = row % p.count;
    uint4 v = values[i];
    if (addend) {  // in float, rounded once, as merge_rows_kernel does
      uint4 a = addend[(p.addend_per_image ? b : row) * vectors + c];
      auto* vh = reinterpret_cast<__half2*>(&v);
      const auto* ah = reinterpret_cast<const __half2*>(&a);
      for (int k = 0; k < 4; ++k) {
        const float2 x = __half22float2(vh[k]), y = __half22float2(ah[k]);
        vh[k] = __floats2half2_rn(x.x + y.x, x.y + y.y);
      }
    }
    dst[(b * p.length + p.positions[slot]) * vectors + c] = v;
  }
}

template <Move kMove>
cudaError_t move_rows(const RowsParams& p, cudaStream_t stream) {
  if (p.batch * p.count * p.channels == 0) return cudaSuccess;
  if (p.channels % 8 == 0 && aligned16(p.src) && aligned16(p.dst))
    launch_kernel(rows_kernel<kMove, uint4>, grid_for(p.batch * p.count * p.channels / 8), kThreads, 0, stream, p);
  else
    launch_kernel(rows_kernel<kMove, __half>, grid_for(p.batch * p.count * p.channels), kThreads, 0, stream, p);
  return cudaGetLastError();
}

// Spans of one kind of move, kRowsSpansPerLaunch to a launch; unaligned ones one by one.
template <Move kMove>
cudaError_t batched_move_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream) {
  RowsSpans batch{};
  std::size_t n = 0;
  std::int64_t largest = 0;
  const auto flush = [&]() -> cudaError_t {
    if (n == 0) return cudaSuccess;
    launch_kernel(batched_rows_kernel<kMove>,
                  dim3(blocks_for(static_cast<std::size_t>(largest), kThreads, 4096), static_cast<unsigned>(n)), kThreads,
                  0, stream, batch);
    n = 0;
    largest = 0;
    return cudaGetLastError();
  };
  for (std::size_t i = 0; i < count; ++i) {
    const RowsParams& p = spans[i];
    const std::int64_t vectors = p.batch * p.count * p.channels / 8;
    if (vectors == 0) continue;
    if (p.channels % 8 != 0 || !aligned16(p.src) || !aligned16(p.dst)) {
      if (const cudaError_t e = move_rows<kMove>(p, stream); e != cudaSuccess) return e;
      continue;
    }
    batch.span[n++] = p;
    largest = std::max(largest, vectors);
    if (n == kRowsSpansPerLaunch)
      if (const cudaError_t e = flush(); e != cudaSuccess) return e;
  }
  return flush();
}

}  // namespace

cudaError_t gather_rows(const RowsParams& p, cudaStream_t stream) { return move_rows<Move::gather>(p, stream); }

cudaError_t batched_gather_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream) {
  return batched_move_rows<Move::gather>(spans, count, stream);
}

cudaError_t batched_copy_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream) {
  return batched_move_rows<Move::copy>(spans, count, stream);
}

cudaError_t batched_scatter_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream) {
  return batched_move_rows<Move::scatter>(spans, count, stream);
}

cudaError_t merge_rows(const MergeRowsParams& p, cudaStream_t stream) {
  if (p.channels % 8 != 0 || !aligned16(p.base) || !aligned16(p.values) || !aligned16(p.dst) ||
      (p.addend && !aligned16(p.addend)))
    return cudaErrorNotSupported;
  if (p.base == p.dst) {
    const std::int64_t total = p.batch * p.count * p.channels / 8;
    if (total == 0) return cudaSuccess;
    launch_kernel(merge_rows_in_place_kernel, grid_for(total), kThreads, 0, stream, p);
    return cudaGetLastError();
  }
  const std::int64_t total = p.batch * p.length * p.channels / 8;
  if (total == 0) return cudaSuccess;
  launch_kernel(merge_rows_kernel, grid_for(total), kThreads, 0, stream, p);
  return cudaGetLastError();
}

cudaError_t scatter_rows(const RowsParams& p, cudaStream_t stream) { return move_rows<Move::scatter>(p, stream); }

cudaError_t im2col_positions(const Im2colParams& p, cudaStream_t stream) {
  const std::int64_t total = p.rows * p.kh * p.kw * p.cin_padded;
  if (total == 0) return cudaSuccess;
  if (p.cin % 8 == 0 && p.cin == p.cin_padded && p.cin_appended % 8 == 0 && aligned16(p.x) && aligned16(p.columns) &&
      aligned16(p.appended)) {
    // 32-bit indices when the columns and the input both stay below 2^31 vectors.
    constexpr std::int64_t kLimit = std::int64_t{1} << 31;
    // On since measured (H100, 2026-12-07: the recorded 5% SD2 step 3.93 -> 3.83 ms);
    // FISEDIT_IM2COL_32=0 turns it off (the launcher reads it once).
    static const bool narrow = env_flag("FISEDIT_IM2COL_32", true);
    if (narrow && total / 8 < kLimit && p.batch * p.h * p.w * p.cin / 8 < kLimit && p.first_row + p.rows < kLimit)
      launch_im2col_vec8<std::uint32_t>(p, total / 8, stream);
    else
      launch_im2col_vec8<std::int64_t>(p, total / 8, stream);
  }
  else
    launch_kernel(im2col_kernel, grid_for(total), kThreads, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
