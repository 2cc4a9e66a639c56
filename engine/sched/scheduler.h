#pragma once
// Diffusion samplers with diffusers' numerics: DDIM (eta 0), DPM-Solver++ 2M and Euler (each of the last
// two also on Karras sigmas), and Euler ancestral, for epsilon and v-prediction models. A pipeline drives
// one like this:
//
//   auto sched = make_scheduler("dpmpp2m", config);
//   sched->set_timesteps(steps);
//   TorchGenerator generator(seed);
//   x = generator.randn(n) * sched->init_noise_sigma();
//   sched->set_noise_generator(generator);  // ancestral samplers draw their per-step noise from it
//   for (int i = 0; i < sched->num_steps(); ++i) {
//     auto out = unet(sched->scale_model_input(x, i), sched->model_timesteps()[i]);
//     x = sched->step(out, i, x);
//   }
//
// Image to image (diffusers' StableDiffusionImg2ImgPipeline) starts at a later step `start`:
//
//   sched->set_timesteps(steps);
//   sched->set_begin_index(start);                     // img2img_start_step(steps, strength), io/request.h
//   x = sched->add_noise(image_latents, noise, start);  // no init_noise_sigma
//   for (int i = start; i < sched->num_steps(); ++i) ...
//
// Latents are flat float32 spans (any shape: every operation is elementwise).
#include "core/sampler_rule.h"
#include "core/torch_random.h"
#include "io/model_config.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace fisedit {

class Scheduler {
public:
  virtual ~Scheduler() = default;

  virtual const char* name() const = 0;  // one of scheduler_names() (io/request.h)

  // Chooses the timesteps of an N-step run and restarts the sampler; throws Error(invalid_argument)
  // unless 0 < steps <= num_train_timesteps.
  void set_timesteps(int steps);
  int num_steps() const { return static_cast<int>(timesteps_.size()); }
  // The training timesteps of the run, highest first, as diffusers reports them (truncated to integers
  // where its own are fractional).
  const std::vector<std::int64_t>& timesteps() const { return timesteps_; }
  // The timestep to give the U-Net at each step: Euler's are fractional.
  const std::vector<float>& model_timesteps() const { return model_timesteps_; }

  // Standard deviation of the initial noise: multiply unit-normal latents by it.
  virtual float init_noise_sigma() const { return 1.0f; }
  // The U-Net input for step `step_index` (a copy of x for samplers that need no scaling).
  virtual std::vector<float> scale_model_input(std::span<const float> x, int step_index) const;
  // Advances latents x over step `step_index` given the U-Net output for it. Multistep samplers remember
  // earlier outputs: their steps must run in order from 0. Ancestral samplers draw fresh noise of x's
  // size from the noise generator at every step (the last included, as diffusers does).
  virtual std::vector<float> step(std::span<const float> model_output, int step_index,
                                  std::span<const float> x) = 0;

  // The same step as a rule and its scalars (core/sampler_rule.h), for a caller that applies it itself,
  // e.g. on the device (Backend::sampler_step): advances the sampler as step() does, ancestral samplers
  // drawing the step's n noise values into `noise`. A multistep sampler's clean-image estimates (the
  // rule's x0 output, read by its next step when `history` is set) are then the caller's to keep:
  // step() may follow only once set_history has given them back.
  SamplerRule plan_step(int step_index, std::size_t n, std::vector<float>* noise = nullptr);
  // What scale_model_input divides x by at step i (1 for samplers that do not scale).
  virtual float input_divisor(int step_index) const;
  // A multistep sampler's estimate from the step before, as its next step reads it (empty where there
  // is none or the sampler keeps none), and its return after steps taken elsewhere.
  virtual std::vector<float> history() const { return {}; }
  virtual void set_history(std::vector<float> estimate) { (void)estimate; }

  // Image to image (diffusers' StableDiffusionImg2ImgPipeline): the run starts at step `index` of the
  // set_timesteps schedule instead of 0, as diffusers' set_begin_index; multistep samplers start
  // their history empty there (DPM++ 2M's first step is first order). set_timesteps resets it to 0.
  virtual void set_begin_index(int index);
  int begin_index() const { return begin_index_; }
  // diffusers' scheduler.add_noise(x0, noise, timesteps[step_index]): x0 brought to the noise level of
  // step `step_index`, in each sampler's own convention for latents (DDIM and DPM-Solver:
  // sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) noise; Euler: x0 + sigma noise, no init_noise_sigma).
  virtual std::vector<float> add_noise(std::span<const float> x0, std::span<const float> noise,
                                       int step_index) const = 0;

  // Whether step() adds fresh noise (Euler ancestral): then the result depends on the generator's
  // state, and an edit that replays the steps must hand over the generation's generator as it was.
  virtual bool ancestral() const { return false; }
  // The generator ancestral steps draw from: diffusers passes the pipeline's seeded generator to
  // every step, so the per-step noise continues the stream after the initial latents. Not reset by
  // set_timesteps. Samplers that are not ancestral never draw from it.
  void set_noise_generator(const TorchGenerator& generator) { generator_ = generator; }

protected:
  explicit Scheduler(const SchedulerConfig& config);

  // Fills timesteps_ and model_timesteps_ and resets per-run state; steps is already validated.
  virtual void compute_timesteps(int steps) = 0;
  // Step i's rule; advances the sampler's state (i is checked already). See plan_step.
  virtual SamplerRule rule_for(int i, std::size_t n, std::vector<float>* noise) = 0;
  // Applies `rule` to every element: x's next values; x0 (resized) receives the estimates.
  static std::vector<float> apply(const SamplerRule& rule, std::span<const float> model_output, std::span<const float> x,
                                  std::span<const float> previous_x0, std::span<const float> noise,
                                  std::vector<float>* x0 = nullptr);
  // Throws unless set_timesteps ran and i is a valid step.
  void check_index(int i) const;
  // check_index, and the two spans match in size.
  void check_step(int i, std::span<const float> model_output, std::span<const float> x) const;
  // The same for add_noise.
  void check_noise(int i, std::span<const float> x0, std::span<const float> noise) const;

  SchedulerConfig config_;
  std::vector<float> alphas_cumprod_;  // per training timestep, float32 as diffusers holds them
  std::vector<std::int64_t> timesteps_;
  std::vector<float> model_timesteps_;
  std::optional<TorchGenerator> generator_;
  int begin_index_ = 0;
};

// name: "ddim", "dpmpp2m", "euler" (diffusers' DDIMScheduler, DPMSolverMultistepScheduler,
// EulerDiscreteScheduler), "dpmpp2m_karras", "euler_karras" (the same two with use_karras_sigmas) or
// "euler_a" (EulerAncestralDiscreteScheduler); throws Error(invalid_argument) for any other name and
// Error(unsupported) for config options these samplers do not implement. The name decides the sigmas:
// a config's own use_karras_sigmas only picks the default sampler (sampler_for_class, pipeline/).
//
// The noise schedule (betas, training steps, prediction type) always comes from `config`. Options of
// the sampler itself (timestep spacing, steps offset, set_alpha_to_one, solver settings in `raw`) are
// read from it only when it was written for that sampler's diffusers class (`_class_name`); otherwise
// the class's defaults apply, as in the reference goldens: a DDIMScheduler config's "leading" spacing
// does not carry over to DPM-Solver or Euler, which use "linspace".
std::unique_ptr<Scheduler> make_scheduler(std::string_view name, const SchedulerConfig& config);

}  // namespace fisedit
