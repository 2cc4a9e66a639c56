#pragma once
// Element type conversion on the device: weights arrive as F16/BF16/F32 and the CUDA backend stores
// fp16, so every load passes through here.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// IEEE half bits -> float.
cudaError_t half_to_float(const std::uint16_t* in, float* out, std::size_t n, cudaStream_t stream);
// float -> IEEE half bits, round to nearest even (overflow to infinity, as the CPU conversion does).
cudaError_t float_to_half(const float* in, std::uint16_t* out, std::size_t n, cudaStream_t stream);
// bfloat16 bits -> IEEE half bits, round to nearest even.
cudaError_t bf16_to_half(const std::uint16_t* in, std::uint16_t* out, std::size_t n, cudaStream_t stream);

}  // namespace fisedit::kernels
