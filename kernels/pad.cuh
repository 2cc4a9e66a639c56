#pragma once
// Copies an NHWC tensor into one of another size: zero rows and columns around it (explicit,
// possibly asymmetric spatial padding, which cuDNN cannot express), zero channels after it (cuDNN's
// tensor-core paths want channel counts that are multiples of 8), or trailing channels dropped (the
// way back after a convolution ran on padded output channels).
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct PadNhwcArgs {
  const std::uint16_t* in = nullptr;  // [n, h, w, c] IEEE half bits
  std::uint16_t* out = nullptr;       // [n, out_h, out_w, out_c]
  std::int64_t n = 0, h = 0, w = 0, c = 0;
  std::int64_t out_h = 0, out_w = 0, out_c = 0;
  std::int64_t pad_top = 0, pad_left = 0;  // where in[.., 0, 0, ..] lands in out
};

// out[b, y, x, ch] = in[b, y - pad_top, x - pad_left, ch] inside in (ch < c), else 0.
cudaError_t pad_nhwc(const PadNhwcArgs& args, cudaStream_t stream);

}  // namespace fisedit::kernels
