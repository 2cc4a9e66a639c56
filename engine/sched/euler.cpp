// The Euler sampler (euler.h): interpolated sigmas, scaled inputs and the Euler update.
// Mirrors diffusers' dtypes: timesteps float32 (from float64 numpy), sigmas interpolated in float64 and
// stored as float32, every per-step scalar and the update itself in float32.
#include "sched/euler.h"

#include "core/error.h"
#include "sched/noise_schedule.h"

#include <algorithm>
#include <cmath>

namespace fisedit {

EulerScheduler::EulerScheduler(const SchedulerConfig& config)
    : Scheduler(config), train_sigmas_(train_sigmas(alphas_cumprod_)) {
  const SamplerOptions options(config, "EulerDiscreteScheduler");
  spacing_ = options.timestep_spacing;
  steps_offset_ = options.steps_offset;
  options.require("interpolation_type", "linear");
  options.require("final_sigmas_type", "zero");
  options.require("timestep_type", "discrete");
  options.require("use_karras_sigmas", false);
  options.require("use_exponential_sigmas", false);
  options.require("use_beta_sigmas", false);
}

void EulerScheduler::compute_timesteps(int steps) {
  const int train = config_.num_train_timesteps;
  std::vector<double> ts;
  if (spacing_ == "linspace") {
    ts = np_linspace(0.0, train - 1, steps);  // not rounded: fractional timesteps
    std::reverse(ts.begin(), ts.end());
  } else if (spacing_ == "leading") {
    const int ratio = train / steps;
    for (int i = steps - 1; i >= 0; --i) ts.push_back(static_cast<double>(i) * ratio + steps_offset_);
  } else {  // trailing
    for (double t : np_arange(train, 0.0, -static_cast<double>(train) / steps))
      ts.push_back(np_round(t) - 1.0);
  }
  model_timesteps_.clear();
  timesteps_.clear();
  sigmas_.clear();
  for (double t : ts) {
    const auto t32 = static_cast<float>(t);
    model_timesteps_.push_back(t32);
    timesteps_.push_back(static_cast<std::int64_t>(t32));  // numpy's astype(int64) truncates
    sigmas_.push_back(static_cast<float>(np_interp(static_cast<double>(t32), train_sigmas_)));
  }
  sigmas_.push_back(0.0f);
}

float EulerScheduler::init_noise_sigma() const {
  // Before set_timesteps, diffusers' sigmas cover every training timestep.
  const float max_sigma =
      sigmas_.empty() ? train_sigmas_.back() : *std::max_element(sigmas_.begin(), sigmas_.end());
  if (spacing_ == "linspace" || spacing_ == "trailing") return max_sigma;
  return std::sqrt(max_sigma * max_sigma + 1.0f);
}

std::vector<float> EulerScheduler::scale_model_input(std::span<const float> x, int i) const {
  if (i < 0 || i >= num_steps())
    throw Error(ErrorCode::invalid_argument, "euler: step " + std::to_string(i) + " outside the run");
  const float sigma = sigmas_[static_cast<std::size_t>(i)];
  const float scale = std::sqrt(sigma * sigma + 1.0f);
  std::vector<float> out(x.size());
  for (std::size_t k = 0; k < x.size(); ++k) out[k] = x[k] / scale;
  return out;
}

std::vector<float> EulerScheduler::step(std::span<const float> model_output, int i,
                                        std::span<const float> x) {
  check_step(i, model_output, x);
  const float sigma = sigmas_[static_cast<std::size_t>(i)];
  const float dt = sigmas_[static_cast<std::size_t>(i) + 1] - sigma;
  const float sigma_sq_plus_one = sigma * sigma + 1.0f;
  const float v_scale = -sigma / std::sqrt(sigma_sq_plus_one);
  const bool v_prediction = config_.prediction_type == PredictionType::v_prediction;

  std::vector<float> out(x.size());
  for (std::size_t k = 0; k < x.size(); ++k) {
    const float m = model_output[k];
    const float x0 = v_prediction ? m * v_scale + x[k] / sigma_sq_plus_one : x[k] - sigma * m;
    const float derivative = (x[k] - x0) / sigma;
    out[k] = x[k] + derivative * dt;
  }
  return out;
}

}  // namespace fisedit
