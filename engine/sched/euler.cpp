// The Euler samplers (euler.h): interpolated or Karras sigmas, scaled inputs, the Euler update and its
// ancestral form. Mirrors diffusers' dtypes: timesteps float32 (from float64 numpy), sigmas interpolated
// in float64 and stored as float32, every per-step scalar and the update itself in float32.
#include "sched/euler.h"

#include "core/error.h"
#include "sched/noise_schedule.h"

#include <algorithm>
#include <cmath>

namespace fisedit {

EulerScheduler::EulerScheduler(const SchedulerConfig& config, Variant variant)
    : Scheduler(config), variant_(variant), train_sigmas_(train_sigmas(alphas_cumprod_)) {
  // Euler ancestral is a class of its own in diffusers, with none of EulerDiscreteScheduler's options
  // beyond the spacing.
  const SamplerOptions options(
      config, variant == Variant::ancestral ? "EulerAncestralDiscreteScheduler" : "EulerDiscreteScheduler");
  spacing_ = options.timestep_spacing;
  steps_offset_ = options.steps_offset;
  if (variant != Variant::ancestral) {
    options.require("interpolation_type", "linear");
    options.require("final_sigmas_type", "zero");
    options.require("timestep_type", "discrete");
    // use_karras_sigmas: the sampler's name decides (make_scheduler).
    options.require("use_exponential_sigmas", false);
    options.require("use_beta_sigmas", false);
    // Karras' ends other than the spaced timesteps' sigmas.
    options.require("sigma_min", nullptr);
    options.require("sigma_max", nullptr);
  }
}

const char* EulerScheduler::name() const {
  switch (variant_) {
    case Variant::karras: return "euler_karras";
    case Variant::ancestral: return "euler_a";
    default: return "euler";
  }
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
  // diffusers keeps the spaced timesteps in float32 and interpolates the sigmas at them in float64.
  std::vector<float> t32(ts.begin(), ts.end());
  std::vector<double> sigmas;
  for (float t : t32) sigmas.push_back(np_interp(static_cast<double>(t), train_sigmas_));
  if (variant_ == Variant::karras) {
    // _convert_to_karras between the interpolated sigmas' ends (float64), then each level's timestep
    // by _sigma_to_t, kept fractional.
    sigmas = karras_sigmas(sigmas.back(), sigmas.front(), steps);
    const auto logs = log_sigmas(train_sigmas_);
    for (std::size_t i = 0; i < sigmas.size(); ++i) t32[i] = static_cast<float>(sigma_to_t(sigmas[i], logs));
  }
  model_timesteps_ = t32;
  timesteps_.clear();
  sigmas_.clear();
  for (std::size_t i = 0; i < t32.size(); ++i) {
    timesteps_.push_back(static_cast<std::int64_t>(t32[i]));  // numpy's astype(int64) truncates
    sigmas_.push_back(static_cast<float>(sigmas[i]));
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

float EulerScheduler::input_divisor(int i) const {
  check_index(i);
  const float sigma = sigmas_[static_cast<std::size_t>(i)];
  return std::sqrt(sigma * sigma + 1.0f);
}

SamplerRule EulerScheduler::rule_for(int i, std::size_t n, std::vector<float>* noise) {
  const float sigma = sigmas_[static_cast<std::size_t>(i)];
  const float sigma_next = sigmas_[static_cast<std::size_t>(i) + 1];
  const float sigma_sq_plus_one = sigma * sigma + 1.0f;
  SamplerRule r;
  r.kind = SamplerRule::euler;
  r.v_prediction = config_.prediction_type == PredictionType::v_prediction;
  r.s[0] = sigma;
  r.s[1] = sigma_sq_plus_one;
  r.s[2] = -sigma / std::sqrt(sigma_sq_plus_one);
  // The ancestral step splits the way down to sigma_next into a deterministic part to sigma_down and
  // fresh noise of sigma_up (sigma_down^2 + sigma_up^2 = sigma_next^2), as diffusers' float32 scalars.
  float sigma_to = sigma_next;
  if (variant_ == Variant::ancestral) {
    if (!generator_)
      throw Error(ErrorCode::invalid_argument, "euler_a: no noise generator (set_noise_generator) for its steps");
    const float from_sq = sigma * sigma, to_sq = sigma_next * sigma_next;
    const float sigma_up = std::sqrt(to_sq * (from_sq - to_sq) / from_sq);
    sigma_to = std::sqrt(to_sq - sigma_up * sigma_up);
    r.noise = 1;
    r.s[4] = sigma_up;
    *noise = generator_->randn(static_cast<std::int64_t>(n));  // drawn at the last step too
  }
  r.s[3] = sigma_to - sigma;
  return r;
}

std::vector<float> EulerScheduler::step(std::span<const float> model_output, int i,
                                        std::span<const float> x) {
  check_step(i, model_output, x);
  std::vector<float> noise;
  const auto rule = rule_for(i, x.size(), &noise);
  return apply(rule, model_output, x, {}, noise);
}

// diffusers (Euler and Euler ancestral): x0 + noise * sigmas[begin_index], variance-exploding latents
// as they are (img2img does not multiply them by init_noise_sigma).
std::vector<float> EulerScheduler::add_noise(std::span<const float> x0, std::span<const float> noise, int i) const {
  check_noise(i, x0, noise);
  const float sigma = sigmas_[static_cast<std::size_t>(i)];
  std::vector<float> out(x0.size());
  for (std::size_t k = 0; k < x0.size(); ++k) {
    const float q = noise[k] * sigma;
    out[k] = x0[k] + q;
  }
  return out;
}

}  // namespace fisedit
