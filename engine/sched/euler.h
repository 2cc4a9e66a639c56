#pragma once
// Euler, as diffusers' EulerDiscreteScheduler (no churn, linear sigma interpolation, final sigma 0):
// works on the variance-exploding latents x = x0 + sigma * eps, so the U-Net input is rescaled and
// timesteps between training steps are fractional.
#include "sched/scheduler.h"

#include <string>

namespace fisedit {

class EulerScheduler final : public Scheduler {
public:
  explicit EulerScheduler(const SchedulerConfig& config);

  const char* name() const override { return "euler"; }
  float init_noise_sigma() const override;
  std::vector<float> scale_model_input(std::span<const float> x, int step_index) const override;
  std::vector<float> step(std::span<const float> model_output, int step_index,
                          std::span<const float> x) override;

protected:
  void compute_timesteps(int steps) override;

private:
  std::vector<float> train_sigmas_;
  std::vector<float> sigmas_;  // per step, plus the final 0
  std::string spacing_;
  int steps_offset_;
};

}  // namespace fisedit
