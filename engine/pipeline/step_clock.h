#pragma once
// What generation.cpp and edit.cpp share around their step loops: the stage clock, the
// cancellation check made before each step and stage, and the seeded noise. Private to pipeline/.
#include "core/error.h"
#include "core/torch_random.h"
#include "io/request.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <stop_token>
#include <string>
#include <vector>

namespace fisedit::pipeline_detail {

using Clock = std::chrono::steady_clock;

inline double ms_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

inline double ms_since(Clock::time_point t0) { return ms_between(t0, Clock::now()); }

// Throws Error(cancelled) "<what> cancelled" once `stop` is requested.
inline void check_stop(const std::stop_token& stop, const char* what) {
  if (stop.stop_requested()) throw Error(ErrorCode::cancelled, std::string(what) + " cancelled");
}

// A NaN or infinity anywhere stops the generation or edit at that step rather than decoding it into a
// black image: "step 7 of 20: the U-Net's prediction turned NaN or infinite (...)".
inline Error not_finite(int step, int steps, const char* what) {
  return Error(ErrorCode::invalid_argument, "step " + std::to_string(step) + " of " + std::to_string(steps) + ": " + what +
                                                " turned NaN or infinite (the model's weights or configs, or the "
                                                "sampler and step count, do not work together)");
}

inline void check_finite(const std::vector<float>& values, int step, int steps, const char* what) {
  bool finite = true;
  for (const float v : values) finite &= std::isfinite(v);
  if (!finite) throw not_finite(step, steps, what);
}

// The request's seeded generator as diffusers' pipeline leaves it after preparing the latents: the
// initial noise drawn from it (n values, into `initial` when given), or nothing drawn when the request
// brings its own latents. An ancestral sampler's per-step noise continues from here, so a generation
// and every edit that replays its steps draw the same noise in the same order.
//
// Image to image draws, as diffusers' StableDiffusionImg2ImgPipeline.prepare_latents: first the VAE
// latent's sample (latent_dist.sample(generator): n unit-normal values, into `latent_sample`), then
// the noise add_noise mixes in (into `initial`, unless the request brings it).
inline TorchGenerator seeded_noise(const GenerationRequest& r, std::int64_t n, std::vector<float>* initial = nullptr,
                                   std::vector<float>* latent_sample = nullptr) {
  TorchGenerator generator(r.seed);
  if (r.init_image) {
    auto sample = generator.randn(n);
    if (latent_sample) *latent_sample = std::move(sample);
  }
  if (!r.initial_noise) {
    auto noise = generator.randn(n);
    if (initial) *initial = std::move(noise);
  }
  return generator;
}

}  // namespace fisedit::pipeline_detail
