// The DPM-Solver++ 2M sampler (dpm_solver.h): sigmas, data predictions and the multistep update.
// Follows diffusers' float32 tensor arithmetic: sigmas are float32, the log-SNR differences and
// coefficients are float32 scalars, and the update is applied elementwise in diffusers' order.
#include "sched/dpm_solver.h"

#include "core/error.h"
#include "sched/noise_schedule.h"

#include <algorithm>
#include <cmath>

namespace fisedit {
namespace {

struct AlphaSigma {
  float alpha;
  float sigma;
  float lambda;  // log-SNR: log(alpha) - log(sigma); +inf at sigma 0
};

// A variance-exploding noise level as the pair (alpha_t, sigma_t) of x_t = alpha_t x0 + sigma_t eps.
AlphaSigma alpha_sigma(float sigma) {
  const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  const float s = sigma * alpha;
  return {alpha, s, std::log(alpha) - std::log(s)};
}

}  // namespace

DpmSolverScheduler::DpmSolverScheduler(const SchedulerConfig& config, bool karras)
    : Scheduler(config), train_sigmas_(train_sigmas(alphas_cumprod_)), karras_(karras) {
  const SamplerOptions options(config, "DPMSolverMultistepScheduler");
  spacing_ = options.timestep_spacing;
  steps_offset_ = options.steps_offset;
  lower_order_final_ = options.flag("lower_order_final", true);
  euler_at_final_ = options.flag("euler_at_final", false);
  const std::string final_sigmas = options.text("final_sigmas_type", "zero");
  if (final_sigmas != "zero" && final_sigmas != "sigma_min")
    throw Error(ErrorCode::unsupported, "DPMSolverMultistepScheduler final_sigmas_type \"" + final_sigmas +
                                            "\" is not supported (zero or sigma_min)");
  final_sigma_zero_ = final_sigmas == "zero";
  options.require("algorithm_type", "dpmsolver++");
  options.require("solver_order", 2);
  options.require("solver_type", "midpoint");
  // use_karras_sigmas: the sampler's name decides (make_scheduler).
  options.require("use_exponential_sigmas", false);
  options.require("use_beta_sigmas", false);
  options.require("use_lu_lambdas", false);
  options.require("thresholding", false);
  options.require("variance_type", nullptr);
}

void DpmSolverScheduler::compute_timesteps(int steps) {
  const int train = config_.num_train_timesteps;
  std::vector<std::int64_t> ts;
  // linspace and leading divide the range into steps + 1 parts and drop the lowest point.
  if (spacing_ == "linspace") {
    const auto points = np_linspace(0.0, train - 1, steps + 1);
    for (int i = steps; i >= 1; --i) ts.push_back(static_cast<std::int64_t>(np_round(points[i])));
  } else if (spacing_ == "leading") {
    const int ratio = train / (steps + 1);
    for (int i = steps; i >= 1; --i) ts.push_back(static_cast<std::int64_t>(i) * ratio + steps_offset_);
  } else {  // trailing
    for (double t : np_arange(train, 0.0, -static_cast<double>(train) / steps))
      ts.push_back(static_cast<std::int64_t>(np_round(t)) - 1);
  }
  sigmas_.clear();
  if (karras_) {
    // diffusers: the training sigmas from high to low through _convert_to_karras (its ends are the
    // float32 table's ends), each level's timestep by _sigma_to_t, rounded half to even.
    const auto logs = log_sigmas(train_sigmas_);
    ts.clear();
    for (double sigma : karras_sigmas(train_sigmas_.front(), train_sigmas_.back(), steps)) {
      ts.push_back(static_cast<std::int64_t>(np_round(sigma_to_t(sigma, logs))));
      sigmas_.push_back(static_cast<float>(sigma));
    }
  } else {
    for (std::int64_t t : ts) sigmas_.push_back(static_cast<float>(np_interp(static_cast<double>(t), train_sigmas_)));
  }
  timesteps_ = std::move(ts);
  model_timesteps_.assign(timesteps_.begin(), timesteps_.end());
  sigmas_.push_back(final_sigma_zero_ ? 0.0f : train_sigmas_.front());
  next_step_ = 0;
  has_history_ = false;
  previous_x0_.clear();
}

void DpmSolverScheduler::check_order(int i) const {
  if (i != begin_index_ && i != next_step_)
    throw Error(ErrorCode::invalid_argument, "dpmpp2m: steps must run in order (expected step " +
                                                 std::to_string(next_step_) + ", got " + std::to_string(i) + ")");
}

SamplerRule DpmSolverScheduler::rule_for(int i, std::size_t n, std::vector<float>* noise) {
  (void)n, (void)noise;
  check_order(i);
  if (i == begin_index_) has_history_ = false;
  const auto u = static_cast<std::size_t>(i);
  const AlphaSigma to = alpha_sigma(sigmas_[u + 1]);
  const AlphaSigma from = alpha_sigma(sigmas_[u]);
  const float h = to.lambda - from.lambda;
  SamplerRule r;
  r.kind = SamplerRule::dpm;
  r.v_prediction = config_.prediction_type == PredictionType::v_prediction;
  r.s[0] = from.alpha;
  r.s[1] = from.sigma;
  r.s[2] = to.sigma / from.sigma;
  const float coef = to.alpha * (std::exp(-h) - 1.0f);
  r.s[3] = coef;
  // diffusers' rule: the final step is first order when it goes to sigma 0 (the log-SNR step is infinite
  // there, which the second-order term cannot take), when asked to, or for runs under 15 steps with
  // lower_order_final; the first step has no history to extrapolate from.
  const bool last = i == num_steps() - 1;
  const bool first_order_final =
      last && (euler_at_final_ || (lower_order_final_ && num_steps() < 15) || final_sigma_zero_);
  if (has_history_ && !first_order_final) {
    const AlphaSigma before = alpha_sigma(sigmas_[u - 1]);
    const float h0 = from.lambda - before.lambda;
    r.history = 1;
    r.s[4] = 1.0f / (h0 / h);
    r.s[5] = 0.5f * coef;
  }
  // The estimate this step makes is the next one's history: the caller's (plan_step) or step()'s.
  has_history_ = true;
  previous_x0_.clear();
  next_step_ = i + 1;
  return r;
}

std::vector<float> DpmSolverScheduler::step(std::span<const float> model_output, int i,
                                            std::span<const float> x) {
  check_step(i, model_output, x);
  check_order(i);
  if (i != begin_index_ && has_history_ && previous_x0_.size() != x.size())
    throw Error(ErrorCode::invalid_argument,
                previous_x0_.empty() ? "dpmpp2m: the previous step's estimate is not here (set_history after steps "
                                       "taken elsewhere)"
                                     : "dpmpp2m: the latent size changed between steps");
  const std::vector<float> previous = std::move(previous_x0_);
  std::vector<float> x0;
  auto out = apply(rule_for(i, x.size(), nullptr), model_output, x, previous, {}, &x0);
  previous_x0_ = std::move(x0);
  return out;
}

void DpmSolverScheduler::set_begin_index(int index) {
  Scheduler::set_begin_index(index);
  next_step_ = index;
  has_history_ = false;
  previous_x0_.clear();  // diffusers' lower_order_nums counts from 0 at the first step taken
}

// diffusers: alpha_t, sigma_t = _sigma_to_alpha_sigma_t(sigmas[begin_index]); alpha_t x0 + sigma_t noise.
std::vector<float> DpmSolverScheduler::add_noise(std::span<const float> x0, std::span<const float> noise, int i) const {
  check_noise(i, x0, noise);
  const AlphaSigma s = alpha_sigma(sigmas_[static_cast<std::size_t>(i)]);
  std::vector<float> out(x0.size());
  for (std::size_t k = 0; k < x0.size(); ++k) {
    const float p = s.alpha * x0[k], q = s.sigma * noise[k];
    out[k] = p + q;
  }
  return out;
}

}  // namespace fisedit
