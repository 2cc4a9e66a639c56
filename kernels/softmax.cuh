#pragma once
// Row-wise softmax of fp16 scores in place, computed in float32: the middle of attention done as two
// GEMMs (the VAE's single 512-wide head, too wide for the flash kernel's registers).
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// scores [rows, cols] -> softmax(scale * scores) per row.
cudaError_t softmax_rows(__half* scores, std::int64_t rows, std::int64_t cols, float scale, cudaStream_t stream);

}  // namespace fisedit::kernels
