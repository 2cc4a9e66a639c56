#pragma once
// Data movement of sparse execution: rows at a set of positions, and the im2col patches of a
// convolution's output positions (so a sparse convolution is one GEMM over the active positions).
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// src [batch, length, channels] -> dst [batch, count, channels]: dst row i = src row positions[i].
// scatter: the reverse, into dst [batch, length, channels].
struct RowsParams {
  const __half* src;
  __half* dst;
  const std::int32_t* positions;
  std::int64_t batch, length, count, channels;
};
cudaError_t gather_rows(const RowsParams& p, cudaStream_t stream);
// Many gathers in one launch (an edit's replayed step keeps the rows it computed of each output this
// way): each as gather_rows does it. Spans travel as the kernel's parameter, kRowsSpansPerLaunch at a
// time; spans whose channels are not a multiple of 8 or whose pointers are not 16-byte aligned run
// one by one.
constexpr int kRowsSpansPerLaunch = 64;
cudaError_t batched_gather_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream);
// The same for copies between two [batch, length, channels] tensors: dst row positions[i] of each
// image = src's (an edit's replayed step copies in the cached rows it reads this way).
cudaError_t batched_copy_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream);
// The same for scatters: dst [batch, length, channels] row positions[i] of each image = src
// ([batch, count, channels]) row i (a sparse transformer block writes its new keys and values this way).
cudaError_t batched_scatter_rows(const RowsParams* spans, std::size_t count, cudaStream_t stream);

// dst [batch, length, channels] = base with row positions[i] of each image taken from values row i
// ([batch, count, channels]), plus addend row i ([batch, count, channels]) or addend row b
// ([batch, 1, channels], addend_per_image) when addend is set. A row's value is found through inverse
// ([length]: its row in values or -1) when set, else by a binary search in the ascending positions.
// Needs channels % 8 == 0 and 16-byte aligned pointers: cudaErrorNotSupported otherwise. With dst ==
// base, only the rows at positions are written.
struct MergeRowsParams {
  const __half* base;
  const __half* values;
  __half* dst;
  const std::int32_t* positions;
  std::int64_t batch, length, count, channels;
  const std::int32_t* inverse = nullptr;
  const __half* addend = nullptr;
  bool addend_per_image = false;
};
cudaError_t merge_rows(const MergeRowsParams& p, cudaStream_t stream);
cudaError_t scatter_rows(const RowsParams& p, cudaStream_t stream);

// x [batch, h, w, cin] -> columns [rows, kh * kw * cin_padded]: for patch rows first_row ..
// first_row + rows - 1 of the batch * count output pixels, the patch of output position positions[r %
// count] (or r % count itself when positions is null) of image r / count, in an output out_w wide;
// zero outside the image and in the padding channels. Rows in chunks bound the columns' memory.
// With norm.gamma set, values inside the image go through a GroupNorm with the given statistics (then
// SiLU when asked) on their way, computed as the GroupNorm kernels compute it.
struct Im2colNorm {
  const __half* gamma = nullptr;  // [cin]
  const __half* beta = nullptr;   // [cin]
  const float* mean = nullptr;    // [batch, groups]
  const float* var = nullptr;     // [batch, groups]
  int groups = 1;
  float eps = 0.0f;
  bool silu = false;
};
struct Im2colParams {
  const __half* x;
  __half* columns;
  const std::int32_t* positions;
  std::int64_t batch, h, w, cin, cin_padded, count, out_w;
  int kh, kw, stride, pad_top, pad_left;
  std::int64_t first_row, rows;
  Im2colNorm norm;
  // With appended set: x holds the first cin - cin_appended channels, appended [batch, h, w,
  // cin_appended] the rest (a channel concatenation never made).
  const __half* appended = nullptr;
  std::int64_t cin_appended = 0;
};
cudaError_t im2col_positions(const Im2colParams& p, cudaStream_t stream);

}  // namespace fisedit::kernels
