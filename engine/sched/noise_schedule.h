#pragma once
// Building blocks shared by the samplers: the training noise schedule as diffusers computes it (torch
// float32 tensors), and the few numpy routines its set_timesteps relies on (float64), reproduced
// operation for operation so that timesteps and sigmas come out bit-identical.
#include "io/model_config.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fisedit {

// cumprod(1 - betas) per training timestep; throws Error(unsupported) for other beta schedules than
// "linear" and "scaled_linear" (or explicit trained_betas) and for options that change the schedule.
std::vector<float> train_alphas_cumprod(const SchedulerConfig& config);

// sigma = sqrt((1 - alpha_cumprod) / alpha_cumprod), the noise level of each training timestep.
std::vector<float> train_sigmas(std::span<const float> alphas_cumprod);

// np.linspace(start, stop, num) and np.arange(start, stop, step), float64.
std::vector<double> np_linspace(double start, double stop, int num);
std::vector<double> np_arange(double start, double stop, double step);
// numpy rounds halves to even (np.round(0.5) == 0, np.round(499.5) == 500).
double np_round(double v);
// np.interp(x, arange(len(fp)), fp): linear interpolation over integer abscissae.
double np_interp(double x, std::span<const float> fp);

// Karras et al.'s noise levels as diffusers' _convert_to_karras computes them (float64, rho = 7): n
// sigmas from sigma_max down to sigma_min, evenly spaced in sigma^(1/rho).
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n);
// diffusers' _sigma_to_t: the fractional training timestep of noise level `sigma`, interpolated
// linearly in log sigma between the two training timesteps around it (clamped to the table's ends).
// log_sigmas: np.log of the float32 training sigmas, float32 as numpy keeps them.
double sigma_to_t(double sigma, std::span<const float> log_sigmas);
std::vector<float> log_sigmas(std::span<const float> sigmas);

// Sampler-specific options: present in config.raw only when the config was written for `class_name`.
struct SamplerOptions {
  SamplerOptions(const SchedulerConfig& config, std::string_view class_name);

  bool own;  // the config is this sampler's own
  std::string timestep_spacing;
  int steps_offset;

  // The option's value, `fallback` when it is absent or null; one of another type is refused
  // (Error(corrupt_file) naming the file and key), never read as the fallback.
  bool flag(const char* key, bool fallback) const;
  std::string text(const char* key, const std::string& fallback) const;
  double number(const char* key, double fallback) const;
  // Throws Error(unsupported) when the config asks for `key` != `supported` (for options not handled).
  void require(const char* key, const nlohmann::json& supported) const;

private:
  // The option's value when the config is this sampler's and sets it (null reads as unset); throws
  // Error(corrupt_file) naming the file when it has another type.
  const nlohmann::json* find(const char* key, bool (nlohmann::json::*is_type)() const noexcept, const char* expected) const;
  const SchedulerConfig* config_;
};

}  // namespace fisedit
