#pragma once
// DDIM with eta = 0 (deterministic), as diffusers' DDIMScheduler.
#include "sched/scheduler.h"

namespace fisedit {

class DdimScheduler final : public Scheduler {
public:
  explicit DdimScheduler(const SchedulerConfig& config);

  const char* name() const override { return "ddim"; }
  std::vector<float> step(std::span<const float> model_output, int step_index,
                          std::span<const float> x) override;
  std::vector<float> add_noise(std::span<const float> x0, std::span<const float> noise, int step_index) const override;

protected:
  void compute_timesteps(int steps) override;
  SamplerRule rule_for(int i, std::size_t n, std::vector<float>* noise) override;

private:
  std::string spacing_;
  int steps_offset_;
  float final_alpha_cumprod_;
  bool clip_sample_;
  float clip_sample_range_;
};

}  // namespace fisedit
