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

// A decoded image's values (fp16 bits when `half`, else float32) -> 8-bit as diffusers' numpy_to_pil:
// round(255 * clamp(x / 2 + 0.5, 0, 1)), ties to even; *nonfinite becomes 1 when any value is NaN or
// infinite (it is not cleared here).
cudaError_t to_rgb8(const void* in, bool half, std::uint8_t* out, std::size_t n, int* nonfinite, cudaStream_t stream);

}  // namespace fisedit::kernels
