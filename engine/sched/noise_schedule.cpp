// The training noise schedule and the numpy routines set_timesteps relies on (noise_schedule.h).
#include "sched/noise_schedule.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>

namespace fisedit {
namespace {

// torch.linspace(start, end, n, dtype=float32) on the CPU: float arithmetic, the first half counted up
// from start and the second half down from end. (torch's vector loop forms some values as run base +
// lane * step, one bit off for a few betas; that moves alphas_cumprod by ~1e-7 relative, below what the
// goldens can resolve, and depends on the CPU's vector width, so the plain formula stands.)
std::vector<float> torch_linspace_f32(double start_d, double end_d, std::int64_t n) {
  const float start = static_cast<float>(start_d);
  const float end = static_cast<float>(end_d);
  std::vector<float> out(static_cast<std::size_t>(n), start);
  if (n < 2) return out;
  const float step = (end - start) / static_cast<float>(n - 1);
  const std::int64_t halfway = n / 2;
  for (std::int64_t i = 0; i < n; ++i)
    out[static_cast<std::size_t>(i)] =
        i < halfway ? start + step * static_cast<float>(i) : end - step * static_cast<float>(n - i - 1);
  return out;
}

}  // namespace

std::vector<float> train_alphas_cumprod(const SchedulerConfig& config) {
  const std::int64_t n = config.num_train_timesteps;
  std::vector<float> betas;
  const auto trained = config.raw.find("trained_betas");
  if (trained != config.raw.end() && !trained->is_null()) {
    betas = trained->get<std::vector<float>>();
    if (static_cast<std::int64_t>(betas.size()) != n)
      throw Error(ErrorCode::invalid_argument, "scheduler config: trained_betas has " +
                                                   std::to_string(betas.size()) + " values, expected " +
                                                   std::to_string(n));
  } else if (config.beta_schedule == "linear") {
    betas = torch_linspace_f32(config.beta_start, config.beta_end, n);
  } else if (config.beta_schedule == "scaled_linear") {
    // diffusers: linspace of the square roots (Python doubles of the float config values), squared.
    betas = torch_linspace_f32(std::sqrt(static_cast<double>(config.beta_start)),
                               std::sqrt(static_cast<double>(config.beta_end)), n);
    for (float& b : betas) b = b * b;
  } else {
    throw Error(ErrorCode::unsupported, "scheduler config: beta_schedule \"" + config.beta_schedule +
                                            "\" is not supported (linear or scaled_linear)");
  }
  const auto zero_snr = config.raw.find("rescale_betas_zero_snr");
  if (zero_snr != config.raw.end() && zero_snr->is_boolean() && zero_snr->get<bool>())
    throw Error(ErrorCode::unsupported, "scheduler config: rescale_betas_zero_snr is not supported");
  // torch's CPU cumprod accumulates float32 products in double.
  std::vector<float> alphas_cumprod(betas.size());
  double product = 1.0;
  for (std::size_t t = 0; t < betas.size(); ++t) {
    product *= static_cast<double>(1.0f - betas[t]);
    alphas_cumprod[t] = static_cast<float>(product);
  }
  return alphas_cumprod;
}

std::vector<float> train_sigmas(std::span<const float> alphas_cumprod) {
  std::vector<float> sigmas(alphas_cumprod.size());
  for (std::size_t t = 0; t < sigmas.size(); ++t)
    sigmas[t] = std::sqrt((1.0f - alphas_cumprod[t]) / alphas_cumprod[t]);
  return sigmas;
}

std::vector<double> np_linspace(double start, double stop, int num) {
  std::vector<double> out(static_cast<std::size_t>(std::max(num, 0)));
  const double step = num > 1 ? (stop - start) / (num - 1) : 0.0;
  for (int i = 0; i < num; ++i) out[static_cast<std::size_t>(i)] = i * step + start;
  if (num > 1) out.back() = stop;
  return out;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double length = std::ceil((stop - start) / step);
  std::vector<double> out(length > 0 ? static_cast<std::size_t>(length) : 0);
  // numpy fills from its first two values, so the increment is (start + step) - start, not step.
  const double delta = (start + step) - start;
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = i == 1 ? start + step : start + static_cast<double>(i) * delta;
  return out;
}

double np_round(double v) {
  return std::nearbyint(v);  // the default rounding mode rounds halves to even
}

double np_interp(double x, std::span<const float> fp) {
  const auto last = static_cast<double>(fp.size() - 1);
  if (x <= 0.0) return fp.front();
  if (x >= last) return fp.back();
  const auto j = static_cast<std::size_t>(std::floor(x));
  if (x == static_cast<double>(j)) return fp[j];
  const double slope = static_cast<double>(fp[j + 1]) - static_cast<double>(fp[j]);
  return slope * (x - static_cast<double>(j)) + static_cast<double>(fp[j]);
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
  const double rho = 7.0;
  const double min_inv_rho = std::pow(sigma_min, 1.0 / rho);
  const double max_inv_rho = std::pow(sigma_max, 1.0 / rho);
  std::vector<double> sigmas;
  for (double ramp : np_linspace(0.0, 1.0, n))
    sigmas.push_back(std::pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho));
  return sigmas;
}

std::vector<float> log_sigmas(std::span<const float> sigmas) {
  std::vector<float> out(sigmas.size());
  for (std::size_t t = 0; t < sigmas.size(); ++t) out[t] = std::log(sigmas[t]);
  return out;
}

double sigma_to_t(double sigma, std::span<const float> log_sigmas) {
  if (log_sigmas.size() < 2) return 0.0;  // one training timestep: nothing to interpolate
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // low = cumsum(log_sigma - log_sigmas >= 0).argmax(): the first index where the running count of
  // table entries at or below log_sigma peaks (0 when there is none), at most the last but one.
  std::size_t low = 0, count = 0, best = 0;
  for (std::size_t t = 0; t < log_sigmas.size(); ++t) {
    count += log_sigma - static_cast<double>(log_sigmas[t]) >= 0.0;
    if (count > best) best = count, low = t;
  }
  low = std::min(low, log_sigmas.size() - 2);
  const float lo = log_sigmas[low];
  const float hi = log_sigmas[low + 1];
  // numpy: (float32 - float64) is float64, (float32 - float32) stays float32.
  double w = (static_cast<double>(lo) - log_sigma) / static_cast<double>(lo - hi);
  w = std::clamp(w, 0.0, 1.0);
  return (1.0 - w) * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

SamplerOptions::SamplerOptions(const SchedulerConfig& config, std::string_view class_name)
    : own(config.class_name == class_name),
      timestep_spacing(own ? config.timestep_spacing : "linspace"),
      steps_offset(own ? config.steps_offset : 0),
      config_(&config) {
  if (timestep_spacing != "leading" && timestep_spacing != "trailing" && timestep_spacing != "linspace")
    throw Error(ErrorCode::unsupported, "scheduler config: timestep_spacing \"" + timestep_spacing +
                                            "\" is not supported (leading, trailing or linspace)");
}

// An option present with another type than the sampler reads is refused, not read as its default
// (SchedulerConfig::from_json checks the options it knows; this covers every option a sampler reads).
const nlohmann::json* SamplerOptions::find(const char* key, bool (nlohmann::json::*is_type)() const noexcept,
                                           const char* expected) const {
  if (!own) return nullptr;
  const auto it = config_->raw.find(key);
  if (it == config_->raw.end() || it->is_null()) return nullptr;
  if (!((*it).*is_type)())
    throw Error(ErrorCode::corrupt_file, config_->source.string() + ": \"" + key + "\" must be " + expected + ", not " + it->dump());
  return &*it;
}

bool SamplerOptions::flag(const char* key, bool fallback) const {
  const auto* v = find(key, &nlohmann::json::is_boolean, "true or false");
  return v ? v->get<bool>() : fallback;
}

std::string SamplerOptions::text(const char* key, const std::string& fallback) const {
  const auto* v = find(key, &nlohmann::json::is_string, "a string");
  return v ? v->get<std::string>() : fallback;
}

double SamplerOptions::number(const char* key, double fallback) const {
  const auto* v = find(key, &nlohmann::json::is_number, "a number");
  if (v && !std::isfinite(v->get<double>()))
    throw Error(ErrorCode::corrupt_file, config_->source.string() + ": \"" + key + "\" must be a finite number");
  return v ? v->get<double>() : fallback;
}

void SamplerOptions::require(const char* key, const nlohmann::json& supported) const {
  if (!own) return;
  const auto it = config_->raw.find(key);
  if (it == config_->raw.end() || it->is_null() || *it == supported) return;
  throw Error(ErrorCode::unsupported, config_->class_name + " option " + key + " = " + it->dump() +
                                          " is not supported (only " + supported.dump() + ")");
}

}  // namespace fisedit
