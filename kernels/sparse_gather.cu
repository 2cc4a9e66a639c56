#include "sparse_gather.cuh"

#include <algorithm>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

unsigned grid_for(std::int64_t items) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((items + kThreads - 1) / kThreads, 1, 65535 * 16));
}

template <bool kScatter>
__global__ void rows_kernel(RowsParams p) {
  const std::int64_t total = p.batch * p.count * p.channels;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t c = i % p.channels, row = i / p.channels;
    const std::int64_t b = row / p.count, k = row % p.count;
    const std::int64_t full = (b * p.length + p.positions[k]) * p.channels + c;
    if constexpr (kScatter)
      p.dst[full] = p.src[i];
    else
      p.dst[i] = p.src[full];
  }
}

__global__ void im2col_kernel(Im2colParams p) {
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
    p.columns[i] = inside ? p.x[((b * p.h + iy) * p.w + ix) * p.cin + c] : __float2half(0.0f);
  }
}

}  // namespace

cudaError_t gather_rows(const RowsParams& p, cudaStream_t stream) {
  if (p.batch * p.count * p.channels == 0) return cudaSuccess;
  rows_kernel<false><<<grid_for(p.batch * p.count * p.channels), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t scatter_rows(const RowsParams& p, cudaStream_t stream) {
  if (p.batch * p.count * p.channels == 0) return cudaSuccess;
  rows_kernel<true><<<grid_for(p.batch * p.count * p.channels), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

cudaError_t im2col_positions(const Im2colParams& p, cudaStream_t stream) {
  const std::int64_t total = p.rows * p.kh * p.kw * p.cin_padded;
  if (total == 0) return cudaSuccess;
  im2col_kernel<<<grid_for(total), kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
