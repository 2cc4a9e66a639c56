// Data-movement kernels (layout.cuh): nearest upsampling, channel copies, embedding lookup, NCHW <-> NHWC.
#include "layout.cuh"
#include "launch.cuh"

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;



// The unit a kernel copies: one half, or eight when rows allow 16-byte accesses. Kernels index in
// these units, so the vectorised and scalar versions are one template.
template <int kWidth>
struct Chunk;
template <>
struct Chunk<1> {
  using type = std::uint16_t;
};
template <>
struct Chunk<kVec> {
  using type = uint4;
};

__device__ inline std::int64_t thread_index() { return blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; }
__device__ inline std::int64_t grid_stride() { return std::int64_t{gridDim.x} * blockDim.x; }

// fisedit::nearest_source_index (backend.h), operation for operation. The _rn intrinsics round to
// nearest like the host's float division and multiplication, whatever the compile flags, so host
// and device pick the same source for every size. Computed here rather than tabulated on the host
// so the op needs no host-to-device copy (and can be captured in a CUDA graph).
__device__ inline std::int64_t nearest_source(std::int64_t o, std::int64_t in, std::int64_t out) {
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  const float scale = __fdiv_rn(static_cast<float>(in), static_cast<float>(out));
  const auto i = static_cast<std::int64_t>(__fmul_rn(static_cast<float>(o), scale));
  return i < in - 1 ? i : in - 1;
}

// x [N, H, W, C / kWidth chunks] -> y [N, OH, OW, C / kWidth]
template <int kWidth>
__global__ void upsample_kernel(const std::uint16_t* x, std::uint16_t* y, std::int64_t n, std::int64_t h,
                                std::int64_t w, std::int64_t chunks, std::int64_t oh, std::int64_t ow) {
  dependent_prologue();
  using T = typename Chunk<kWidth>::type;
  const T* src = reinterpret_cast<const T*>(x);
  T* dst = reinterpret_cast<T*>(y);
  for (std::int64_t i = thread_index(); i < n * oh * ow * chunks; i += grid_stride()) {
    const std::int64_t j = i % chunks, pixel = i / chunks;
    const std::int64_t ox = pixel % ow, oy = pixel / ow % oh, b = pixel / (ow * oh);
    const std::int64_t source = (b * h + nearest_source(oy, h, oh)) * w + nearest_source(ox, w, ow);
    dst[i] = src[source * chunks + j];
  }
}

template <int kWidth>
__global__ void copy_channels_kernel(const std::uint16_t* src, std::int64_t src_stride, std::uint16_t* dst,
                                     std::int64_t dst_stride, std::int64_t rows, std::int64_t width) {
  dependent_prologue();
  using T = typename Chunk<kWidth>::type;
  const T* s = reinterpret_cast<const T*>(src);
  T* d = reinterpret_cast<T*>(dst);
  for (std::int64_t i = thread_index(); i < rows * width; i += grid_stride()) {
    const std::int64_t r = i / width, j = i % width;
    d[r * dst_stride + j] = s[r * src_stride + j];
  }
}

// table [V, C / kWidth], ids [n] -> out [n, C / kWidth]
template <int kWidth>
__global__ void embedding_kernel(const std::uint16_t* table, std::int64_t vocab, std::int64_t chunks,
                                 const std::int32_t* ids, std::int64_t n, std::uint16_t* out,
                                 std::uint32_t* first_bad) {
  dependent_prologue();
  using T = typename Chunk<kWidth>::type;
  const T* t = reinterpret_cast<const T*>(table);
  T* o = reinterpret_cast<T*>(out);
  for (std::int64_t i = thread_index(); i < n * chunks; i += grid_stride()) {
    const std::int64_t row = i / chunks, j = i % chunks;
    const std::int32_t id = ids[row];
    if (id < 0 || id >= vocab) {
      if (j == 0) atomicMin(first_bad, static_cast<std::uint32_t>(row));
      o[i] = T{};
    } else {
      o[i] = t[id * chunks + j];
    }
  }
}

constexpr int kTile = 32, kTileRowsPerPass = 8;  // blocks of 32 x 8 threads move 32 x 32 tiles

// Per batch item x [rows, cols] -> y [cols, rows] through a shared tile, so reads and writes are
// both along contiguous rows. Tiles are numbered along grid x, batch items along grid y.
__global__ void transpose_kernel(const std::uint16_t* x, std::uint16_t* y, std::int64_t batch, std::int64_t rows,
                                 std::int64_t cols) {
  dependent_prologue();
  __shared__ std::uint16_t tile[kTile][kTile + 1];  // +1: column reads spread over banks
  const std::int64_t tiles_c = (cols + kTile - 1) / kTile;
  const std::int64_t r0 = blockIdx.x / tiles_c * kTile, c0 = blockIdx.x % tiles_c * kTile;
  for (std::int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const std::uint16_t* src = x + b * rows * cols;
    std::uint16_t* dst = y + b * rows * cols;
    for (int k = threadIdx.y; k < kTile; k += kTileRowsPerPass) {
      const std::int64_t r = r0 + k, c = c0 + threadIdx.x;
      if (r < rows && c < cols) tile[k][threadIdx.x] = src[r * cols + c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < kTile; k += kTileRowsPerPass) {
      const std::int64_t c = c0 + k, r = r0 + threadIdx.x;
      if (c < cols && r < rows) dst[c * rows + r] = tile[threadIdx.x][k];
    }
    __syncthreads();  // the tile is refilled for the next batch item
  }
}

}  // namespace

cudaError_t upsample_nearest(const std::uint16_t* x, std::uint16_t* y, std::int64_t n, std::int64_t h, std::int64_t w,
                             std::int64_t c, std::int64_t oh, std::int64_t ow, cudaStream_t stream) {
  if (n * oh * ow * c == 0) return cudaSuccess;
  if (h <= 0 || w <= 0) return cudaErrorInvalidValue;  // nothing to sample from
  if (c % kVec == 0 && aligned16(x) && aligned16(y))
    launch_kernel(upsample_kernel<kVec>, blocks_for(n * oh * ow * c / kVec), kThreads, 0, stream, x, y, n, h, w, c / kVec, oh, ow);
  else
    launch_kernel(upsample_kernel<1>, blocks_for(n * oh * ow * c), kThreads, 0, stream, x, y, n, h, w, c, oh, ow);
  return cudaGetLastError();
}

cudaError_t copy_channels(const std::uint16_t* src, std::int64_t src_stride, std::uint16_t* dst,
                          std::int64_t dst_stride, std::int64_t rows, std::int64_t width, cudaStream_t stream) {
  if (rows * width == 0) return cudaSuccess;
  if (width % kVec == 0 && src_stride % kVec == 0 && dst_stride % kVec == 0 && aligned16(src) && aligned16(dst))
    launch_kernel(copy_channels_kernel<kVec>, blocks_for(rows * width / kVec), kThreads, 0, stream,
        src, src_stride / kVec, dst, dst_stride / kVec, rows, width / kVec);
  else
    launch_kernel(copy_channels_kernel<1>, blocks_for(rows * width), kThreads, 0, stream, src, src_stride, dst, dst_stride,
                                                                              rows, width);
  return cudaGetLastError();
}

cudaError_t embedding(const std::uint16_t* table, std::int64_t vocab, std::int64_t c, const std::int32_t* ids,
                      std::int64_t n, std::uint16_t* out, std::uint32_t* first_bad, cudaStream_t stream) {
  if (n * c == 0) return cudaSuccess;
  if (c % kVec == 0 && aligned16(table) && aligned16(out))
    launch_kernel(embedding_kernel<kVec>, blocks_for(n * c / kVec), kThreads, 0, stream, table, vocab, c / kVec, ids, n, out,
                                                                              first_bad);
  else
    launch_kernel(embedding_kernel<1>, blocks_for(n * c), kThreads, 0, stream, table, vocab, c, ids, n, out, first_bad);
  return cudaGetLastError();
}

cudaError_t transpose(const std::uint16_t* x, std::uint16_t* y, std::int64_t batch, std::int64_t rows,
                      std::int64_t cols, cudaStream_t stream) {
  if (batch * rows * cols == 0) return cudaSuccess;
  const std::int64_t tiles = ((rows + kTile - 1) / kTile) * ((cols + kTile - 1) / kTile);
  if (tiles > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(batch < 65535 ? batch : 65535));
  launch_kernel(transpose_kernel, grid, dim3(kTile, kTileRowsPerPass), 0, stream, x, y, batch, rows, cols);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
