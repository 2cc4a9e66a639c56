#pragma once
// Sampler steps on the device (Backend::sampler_step, sampler_input): the rule of core/sampler_rule.h
// applied per latent value, with guidance, the kept region and a not-finite flag, in one pass.
#include "core/sampler_rule.h"

#include <cstdint>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct SamplerStepParams {
  const __half* prediction = nullptr;  // [batch, n]: unconditional first when batch is 2
  int batch = 1;
  float cfg_scale = 1.0f;
  SamplerRule rule;
  const float* x = nullptr;        // [n]
  float* history = nullptr;        // [n] or null: read when rule.history, then this step's estimate
  const float* noise = nullptr;    // [n] when rule.noise
  const float* mask = nullptr;     // [pixels] or null: 0 keeps `keep`
  const float* keep = nullptr;     // [n]
  std::int32_t* flags = nullptr;   // bit 1: a guided prediction not finite, bit 2: a latent
  float* out = nullptr;            // [n]
  std::int64_t n = 0, pixels = 1;
};
cudaError_t sampler_step(const SamplerStepParams& p, cudaStream_t stream);

// out[b * n + k] = x[k] / divisor as fp16 (round to nearest even), for b < batch.
cudaError_t sampler_input(const float* x, float divisor, __half* out, std::int64_t n, int batch, cudaStream_t stream);

}  // namespace fisedit::kernels
