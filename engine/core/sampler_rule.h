#pragma once
// One sampler step as a rule and its scalars, applied to each latent element in the same way by the
// host samplers (sched/), the CPU backend and the CUDA kernel (Backend::sampler_step): a step taken on
// the device gives the bits the host's step gives. Each sampler computes its scalars once per step
// (Scheduler::plan_step); the per-element arithmetic lives here only.
//
// Every operation is rounded on its own: on the device through the _rn intrinsics, which the compiler
// never fuses into multiply-adds (the host's x86-64 build has no fused multiply-add).
#include <cstdint>

#if defined(__CUDACC__)
#define FISEDIT_HOST_DEVICE __host__ __device__
#else
#define FISEDIT_HOST_DEVICE
#endif

namespace fisedit {

struct SamplerRule {
  enum Kind : std::int32_t { ddim = 0, dpm = 1, euler = 2 };
  std::int32_t kind = dpm;
  std::int32_t v_prediction = 0;  // the model predicts v, else the noise
  std::int32_t history = 0;       // dpm: second order, reads the previous step's x0 estimate
  std::int32_t clip = 0;          // ddim: clamps x0 to [-s[4], s[4]]
  std::int32_t noise = 0;         // euler (ancestral): adds noise * s[4]
  // ddim:  sqrt(alpha), sqrt(1 - alpha), sqrt(alpha_prev), sqrt(1 - alpha_prev), clip range
  // dpm:   alpha_t, sigma_t, sigma ratio, coefficient, 1 / r0, half the coefficient
  // euler: sigma, sigma^2 + 1, the v-prediction scale, dt, sigma_up
  float s[6] = {};
};

namespace sampler_detail {
#if defined(__CUDA_ARCH__)
__device__ inline float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float div(float a, float b) { return __fdiv_rn(a, b); }
#else
inline float mul(float a, float b) { return a * b; }
inline float add(float a, float b) { return a + b; }
inline float sub(float a, float b) { return a - b; }
inline float div(float a, float b) { return a / b; }
#endif
}  // namespace sampler_detail

// Classifier-free guidance of one element: uncond + scale * (cond - uncond).
FISEDIT_HOST_DEVICE inline float guide(float uncond, float cond, float scale) {
  using namespace sampler_detail;
  return add(uncond, mul(scale, sub(cond, uncond)));
}

// The next latent value from x and the (guided) model output m; `previous_x0` is read by DPM's second
// order only, `noise` by the ancestral step only. `x0` receives the clean-image estimate (what DPM keeps
// for its next step).
FISEDIT_HOST_DEVICE inline float apply_sampler_rule(const SamplerRule& r, float m, float x, float previous_x0,
                                                    float noise, float& x0) {
  using namespace sampler_detail;
  const float* s = r.s;
  switch (r.kind) {
    case SamplerRule::ddim: {
      x0 = r.v_prediction ? sub(mul(s[0], x), mul(s[1], m)) : div(sub(x, mul(s[1], m)), s[0]);
      const float eps = r.v_prediction ? add(mul(s[0], m), mul(s[1], x)) : m;
      // diffusers clips only the clean-image estimate; the noise estimate keeps the model's value.
      if (r.clip) x0 = x0 < -s[4] ? -s[4] : (x0 > s[4] ? s[4] : x0);
      return add(mul(s[2], x0), mul(s[3], eps));
    }
    case SamplerRule::dpm: {
      x0 = r.v_prediction ? sub(mul(s[0], x), mul(s[1], m)) : div(sub(x, mul(s[1], m)), s[0]);
      const float first = sub(mul(s[2], x), mul(s[3], x0));
      if (!r.history) return first;
      const float d1 = mul(s[4], sub(x0, previous_x0));
      return sub(first, mul(s[5], d1));
    }
    default: {  // euler
      x0 = r.v_prediction ? add(mul(m, s[2]), div(x, s[1])) : sub(x, mul(s[0], m));
      const float derivative = div(sub(x, x0), s[0]);
      const float out = add(x, mul(derivative, s[3]));
      return r.noise ? add(out, mul(noise, s[4])) : out;
    }
  }
}

}  // namespace fisedit
