#pragma once
// Euler, as diffusers' EulerDiscreteScheduler (no churn, linear sigma interpolation, final sigma 0):
// works on the variance-exploding latents x = x0 + sigma * eps, so the U-Net input is rescaled and
// timesteps between training steps are fractional. Two variants share it:
// - karras (use_karras_sigmas, "Euler Karras"): the noise levels follow Karras et al.'s rho = 7 schedule
//   between the first and last spaced timestep's sigma, their timesteps interpolated back (fractional);
// - ancestral (EulerAncestralDiscreteScheduler, "Euler a"): each step goes down to sigma_down and adds
//   fresh noise of sigma_up, drawn from the noise generator (Scheduler::set_noise_generator).
#include "sched/scheduler.h"

#include <string>

namespace fisedit {

class EulerScheduler final : public Scheduler {
public:
  enum class Variant { plain, karras, ancestral };
  EulerScheduler(const SchedulerConfig& config, Variant variant);

  const char* name() const override;
  float init_noise_sigma() const override;
  float input_divisor(int step_index) const override;
  std::vector<float> step(std::span<const float> model_output, int step_index,
                          std::span<const float> x) override;
  std::vector<float> add_noise(std::span<const float> x0, std::span<const float> noise, int step_index) const override;
  bool ancestral() const override { return variant_ == Variant::ancestral; }

protected:
  void compute_timesteps(int steps) override;
  SamplerRule rule_for(int i, std::size_t n, std::vector<float>* noise) override;

private:
  Variant variant_;
  std::vector<float> train_sigmas_;
  std::vector<float> sigmas_;  // per step, plus the final 0
  std::string spacing_;
  int steps_offset_;
};

}  // namespace fisedit
