// What every sampler shares (scheduler.h): timesteps, input scaling, step checks, the factory by name.
#include "sched/scheduler.h"

#include "core/error.h"
#include "sched/ddim.h"
#include "sched/dpm_solver.h"
#include "sched/euler.h"
#include "sched/noise_schedule.h"

#include <string>

namespace fisedit {

Scheduler::Scheduler(const SchedulerConfig& config)
    : config_(config), alphas_cumprod_(train_alphas_cumprod(config)) {}

void Scheduler::set_timesteps(int steps) {
  if (steps <= 0 || steps > config_.num_train_timesteps)
    throw Error(ErrorCode::invalid_argument,
                std::string(name()) + ": the number of steps must be between 1 and " +
                    std::to_string(config_.num_train_timesteps) + ", got " + std::to_string(steps));
  compute_timesteps(steps);
  // A large steps_offset can push the first timestep past the training range (diffusers fails there).
  for (std::int64_t t : timesteps_) {
    if (t < 0 || t >= config_.num_train_timesteps) {
      timesteps_.clear();
      model_timesteps_.clear();
      throw Error(ErrorCode::invalid_argument,
                  std::string(name()) + ": " + std::to_string(steps) + " steps reach timestep " +
                      std::to_string(t) + ", outside the " + std::to_string(config_.num_train_timesteps) +
                      " training timesteps (check steps_offset)");
    }
  }
  begin_index_ = 0;
}

void Scheduler::set_begin_index(int index) {
  if (timesteps_.empty())
    throw Error(ErrorCode::invalid_argument, std::string(name()) + ": set_timesteps was not called");
  if (index < 0 || index >= num_steps())
    throw Error(ErrorCode::invalid_argument, std::string(name()) + ": start step " + std::to_string(index) +
                                                 " outside 0.." + std::to_string(num_steps() - 1));
  begin_index_ = index;
}

void Scheduler::check_index(int i) const {
  if (timesteps_.empty())
    throw Error(ErrorCode::invalid_argument, std::string(name()) + ": set_timesteps was not called");
  if (i < 0 || i >= num_steps())
    throw Error(ErrorCode::invalid_argument, std::string(name()) + ": step " + std::to_string(i) +
                                                 " outside 0.." + std::to_string(num_steps() - 1));
}

void Scheduler::check_noise(int i, std::span<const float> x0, std::span<const float> noise) const {
  check_index(i);
  if (x0.size() != noise.size())
    throw Error(ErrorCode::invalid_argument, std::string(name()) + ": add_noise of " + std::to_string(x0.size()) +
                                                 " latents with " + std::to_string(noise.size()) + " noise values");
}

std::vector<float> Scheduler::scale_model_input(std::span<const float> x, int step_index) const {
  const float divisor = input_divisor(step_index);
  std::vector<float> out(x.begin(), x.end());
  if (divisor != 1.0f)
    for (auto& v : out) v = v / divisor;
  return out;
}

float Scheduler::input_divisor(int step_index) const {
  (void)step_index;
  return 1.0f;
}

SamplerRule Scheduler::plan_step(int step_index, std::size_t n, std::vector<float>* noise) {
  check_index(step_index);
  std::vector<float> drawn;
  auto rule = rule_for(step_index, n, &drawn);
  if (noise) *noise = std::move(drawn);
  return rule;
}

std::vector<float> Scheduler::apply(const SamplerRule& rule, std::span<const float> model_output,
                                    std::span<const float> x, std::span<const float> previous_x0,
                                    std::span<const float> noise, std::vector<float>* x0) {
  const std::size_t n = x.size();
  std::vector<float> out(n);
  if (x0) x0->resize(n);
  float estimate = 0.0f;
  for (std::size_t k = 0; k < n; ++k) {
    out[k] = apply_sampler_rule(rule, model_output[k], x[k], rule.history ? previous_x0[k] : 0.0f,
                                rule.noise ? noise[k] : 0.0f, estimate);
    if (x0) (*x0)[k] = estimate;
  }
  return out;
}

void Scheduler::check_step(int i, std::span<const float> model_output, std::span<const float> x) const {
  check_index(i);
  if (model_output.size() != x.size())
    throw Error(ErrorCode::invalid_argument,
                std::string(name()) + ": model output has " + std::to_string(model_output.size()) +
                    " values but the latents have " + std::to_string(x.size()));
}

std::unique_ptr<Scheduler> make_scheduler(std::string_view name, const SchedulerConfig& config) {
  if (name == "ddim") return std::make_unique<DdimScheduler>(config);
  if (name == "dpmpp2m") return std::make_unique<DpmSolverScheduler>(config, false);
  if (name == "dpmpp2m_karras") return std::make_unique<DpmSolverScheduler>(config, true);
  if (name == "euler") return std::make_unique<EulerScheduler>(config, EulerScheduler::Variant::plain);
  if (name == "euler_karras") return std::make_unique<EulerScheduler>(config, EulerScheduler::Variant::karras);
  if (name == "euler_a") return std::make_unique<EulerScheduler>(config, EulerScheduler::Variant::ancestral);
  throw Error(ErrorCode::invalid_argument,
              "unknown scheduler \"" + std::string(name) +
                  "\" (valid: ddim, dpmpp2m, euler, euler_a, dpmpp2m_karras, euler_karras)");
}

}  // namespace fisedit
