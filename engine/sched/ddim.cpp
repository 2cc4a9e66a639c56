// The DDIM sampler (ddim.h): timesteps by the config's spacing, and the deterministic (eta 0) update.
// Coefficients are float32 scalars and the update runs in float32 in diffusers' order of operations,
// which is what keeps a 20-step rollout within ~1e-7 of diffusers.
#include "sched/ddim.h"

#include "sched/noise_schedule.h"

#include <algorithm>
#include <cmath>

namespace fisedit {

DdimScheduler::DdimScheduler(const SchedulerConfig& config) : Scheduler(config) {
  const SamplerOptions options(config, "DDIMScheduler");
  spacing_ = options.timestep_spacing;
  steps_offset_ = options.steps_offset;
  // Without set_alpha_to_one the last step lands on the first training timestep, not on a clean image
  // (SD configs say false; DDIMScheduler's own default is true).
  const bool alpha_to_one = options.own ? config.set_alpha_to_one : true;
  final_alpha_cumprod_ = alpha_to_one ? 1.0f : alphas_cumprod_.front();
  clip_sample_ = options.flag("clip_sample", false);
  clip_sample_range_ = static_cast<float>(options.number("clip_sample_range", 1.0));
  options.require("thresholding", false);
}

void DdimScheduler::compute_timesteps(int steps) {
  const int train = config_.num_train_timesteps;
  std::vector<std::int64_t> ts;
  if (spacing_ == "linspace") {
    for (double t : np_linspace(0.0, train - 1, steps))
      ts.push_back(static_cast<std::int64_t>(np_round(t)));
    std::reverse(ts.begin(), ts.end());
  } else if (spacing_ == "leading") {
    const int ratio = train / steps;
    for (int i = steps - 1; i >= 0; --i) ts.push_back(static_cast<std::int64_t>(i) * ratio + steps_offset_);
  } else {  // trailing
    for (double t : np_arange(train, 0.0, -static_cast<double>(train) / steps))
      ts.push_back(static_cast<std::int64_t>(np_round(t)) - 1);
  }
  timesteps_ = std::move(ts);
  model_timesteps_.assign(timesteps_.begin(), timesteps_.end());
}

SamplerRule DdimScheduler::rule_for(int i, std::size_t n, std::vector<float>* noise) {
  (void)n, (void)noise;
  const std::int64_t t = timesteps_[static_cast<std::size_t>(i)];
  // diffusers steps back by train/steps whatever the spacing, not to the next listed timestep.
  const std::int64_t prev_t = t - config_.num_train_timesteps / num_steps();
  const float alpha = alphas_cumprod_.at(static_cast<std::size_t>(t));
  const float alpha_prev =
      prev_t >= 0 ? alphas_cumprod_.at(static_cast<std::size_t>(prev_t)) : final_alpha_cumprod_;
  SamplerRule r;
  r.kind = SamplerRule::ddim;
  r.v_prediction = config_.prediction_type == PredictionType::v_prediction;
  r.clip = clip_sample_;
  r.s[0] = std::sqrt(alpha);
  r.s[1] = std::sqrt(1.0f - alpha);
  r.s[2] = std::sqrt(alpha_prev);
  r.s[3] = std::sqrt(1.0f - alpha_prev);
  r.s[4] = clip_sample_range_;
  return r;
}

std::vector<float> DdimScheduler::step(std::span<const float> model_output, int i,
                                       std::span<const float> x) {
  check_step(i, model_output, x);
  return apply(rule_for(i, x.size(), nullptr), model_output, x, {}, {});
}

// DDPM's add_noise, which DDIMScheduler shares: float32 alpha_bar at the step's timestep, ** 0.5 each.
std::vector<float> DdimScheduler::add_noise(std::span<const float> x0, std::span<const float> noise, int i) const {
  check_noise(i, x0, noise);
  const float alpha = alphas_cumprod_.at(static_cast<std::size_t>(timesteps_[static_cast<std::size_t>(i)]));
  const float a = std::sqrt(alpha), b = std::sqrt(1.0f - alpha);
  std::vector<float> out(x0.size());
  for (std::size_t k = 0; k < x0.size(); ++k) {
    const float p = a * x0[k], q = b * noise[k];
    out[k] = p + q;
  }
  return out;
}

}  // namespace fisedit
