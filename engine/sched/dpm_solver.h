#pragma once
// DPM-Solver++ 2M, as diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++",
// solver_order 2 and the midpoint solver: each step extrapolates from the last two clean-image
// estimates; the first step, and the last (which jumps to sigma 0), are first order. With Karras sigmas
// (use_karras_sigmas, "DPM++ 2M Karras") the noise levels follow Karras et al.'s rho = 7 schedule between
// the training range's ends and the timesteps are those levels' interpolated training steps, rounded.
#include "sched/scheduler.h"

#include <string>

namespace fisedit {

class DpmSolverScheduler final : public Scheduler {
public:
  DpmSolverScheduler(const SchedulerConfig& config, bool karras);

  const char* name() const override { return karras_ ? "dpmpp2m_karras" : "dpmpp2m"; }
  std::vector<float> step(std::span<const float> model_output, int step_index,
                          std::span<const float> x) override;
  std::vector<float> add_noise(std::span<const float> x0, std::span<const float> noise, int step_index) const override;
  void set_begin_index(int index) override;
  std::vector<float> history() const override { return previous_x0_; }
  void set_history(std::vector<float> estimate) override { previous_x0_ = std::move(estimate); }

protected:
  void compute_timesteps(int steps) override;
  SamplerRule rule_for(int i, std::size_t n, std::vector<float>* noise) override;

private:
  // Throws unless step i may run now (the next step, or the run's first).
  void check_order(int i) const;

  std::vector<float> train_sigmas_;
  std::vector<float> sigmas_;  // per step, plus the final sigma
  std::string spacing_;
  int steps_offset_;
  bool lower_order_final_;
  bool euler_at_final_;
  bool final_sigma_zero_;
  bool karras_;

  int next_step_ = 0;                  // steps must come in order
  bool has_history_ = false;           // a step ran since the start: the next one may be second order
  std::vector<float> previous_x0_;     // its estimate, unless plan_step's caller holds it
};

}  // namespace fisedit
