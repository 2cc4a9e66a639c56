#pragma once
// Data movement on fp16 tensors (IEEE half bits): nearest-neighbour resizing, copying channel ranges
// (concat and slice), embedding lookup and NCHW <-> NHWC transposes. Pure copies: values are
// moved bit for bit, so results equal the CPU backend's exactly.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// x [N, H, W, C] -> y [N, OH, OW, C], source index as fisedit::nearest_source_index (torch's
// F.interpolate(mode="nearest")).
cudaError_t upsample_nearest(const std::uint16_t* x, std::uint16_t* y, std::int64_t n, std::int64_t h, std::int64_t w,
                             std::int64_t c, std::int64_t oh, std::int64_t ow, cudaStream_t stream);

// For each of `rows` rows: dst[r * dst_stride + j] = src[r * src_stride + j], j < width. Callers point
// src and dst at the first channel of the range (concat writes two ranges, slice reads one).
cudaError_t copy_channels(const std::uint16_t* src, std::int64_t src_stride, std::uint16_t* dst,
                          std::int64_t dst_stride, std::int64_t rows, std::int64_t width, cudaStream_t stream);

// table [V, C], ids [n] -> out [n, C]. Rows of ids outside [0, V) are written as zeros and the
// smallest such position is stored to *first_bad with atomicMin: the caller sets it to 0xffffffff
// before and reads it after, to report the error.
cudaError_t embedding(const std::uint16_t* table, std::int64_t vocab, std::int64_t c, const std::int32_t* ids,
                      std::int64_t n, std::uint16_t* out, std::uint32_t* first_bad, cudaStream_t stream);

// Per batch item: x [rows, cols] -> y [cols, rows]. NCHW -> NHWC is rows = C, cols = H * W; the
// reverse is rows = H * W, cols = C.
cudaError_t transpose(const std::uint16_t* x, std::uint16_t* y, std::int64_t batch, std::int64_t rows,
                      std::int64_t cols, cudaStream_t stream);

}  // namespace fisedit::kernels
