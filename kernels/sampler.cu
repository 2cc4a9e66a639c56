// Sampler steps on the device (sampler.cuh).
#include "sampler.cuh"
#include "launch.cuh"

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

__global__ void sampler_step_kernel(SamplerStepParams p) {
  dependent_prologue();
  int bits = 0;
  for (std::int64_t k = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; k < p.n;
       k += std::int64_t{gridDim.x} * blockDim.x) {
    const float u = __half2float(p.prediction[k]);
    const float model = p.batch == 2 ? guide(u, __half2float(p.prediction[p.n + k]), p.cfg_scale) : u;
    float x0 = 0.0f;
    float v = apply_sampler_rule(p.rule, model, p.x[k], p.rule.history ? p.history[k] : 0.0f,
                                 p.rule.noise ? p.noise[k] : 0.0f, x0);
    if (!isfinite(model)) bits |= 1;
    if (!isfinite(v)) bits |= 2;
    if (p.history) p.history[k] = x0;
    if (p.mask && p.mask[k % p.pixels] == 0.0f) v = p.keep[k];
    p.out[k] = v;
  }
  if (bits) atomicOr(p.flags, bits);
}

__global__ void sampler_input_kernel(const float* x, float divisor, __half* out, std::int64_t n, int batch) {
  dependent_prologue();
  for (std::int64_t k = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; k < n;
       k += std::int64_t{gridDim.x} * blockDim.x) {
    const __half v = __float2half_rn(__fdiv_rn(x[k], divisor));
    for (int b = 0; b < batch; ++b) out[b * n + k] = v;
  }
}

}  // namespace

cudaError_t sampler_step(const SamplerStepParams& p, cudaStream_t stream) {
  if (p.n == 0) return cudaSuccess;
  launch_kernel(sampler_step_kernel, blocks_for(static_cast<std::size_t>(p.n), kThreads), kThreads, 0, stream, p);
  return cudaGetLastError();
}

cudaError_t sampler_input(const float* x, float divisor, __half* out, std::int64_t n, int batch, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  launch_kernel(sampler_input_kernel, blocks_for(static_cast<std::size_t>(n), kThreads), kThreads, 0, stream, x, divisor, out, n, batch);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
