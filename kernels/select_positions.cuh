#pragma once
// Sparse editing's blend: per position, the new activation or the cached one, copied bit for bit.
#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct SelectPositionsParams {
  const __half* mask;  // [positions], nonzero: take a
  const __half* a;     // [batch, positions, channels]
  const __half* b;
  __half* out;
  std::int64_t batch, positions, channels;
};

cudaError_t select_positions(const SelectPositionsParams& p, cudaStream_t stream);

}  // namespace fisedit::kernels
