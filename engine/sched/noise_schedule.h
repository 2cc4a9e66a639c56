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

// Sampler-specific options: present in config.raw only when the config was written for `class_name`.
struct SamplerOptions {
  SamplerOptions(const SchedulerConfig& config, std::string_view class_name);

  bool own;  // the config is this sampler's own
  std::string timestep_spacing;
  int steps_offset;

  bool flag(const char* key, bool fallback) const;
  std::string text(const char* key, const std::string& fallback) const;
  double number(const char* key, double fallback) const;
  // Throws Error(unsupported) when the config asks for `key` != `supported` (for options not handled).
  void require(const char* key, const nlohmann::json& supported) const;

private:
  const SchedulerConfig* config_;
};

}  // namespace fisedit
