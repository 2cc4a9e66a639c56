#pragma once
// What a generation or an edit is asked to make: plain values, below the pipeline that makes them
// (pipeline/generation.h includes this), so that io can store and read them (io/request_json.h,
// io/a1111_parameters.h).
#include "core/latent_mask.h"
#include "core/tensor.h"
#include "io/image_file.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace fisedit {

// The samplers fisedit has: the values GenerationRequest::scheduler takes. The plain list lives here,
// beside the field it spells, rather than in sched/ (whose make_scheduler builds them): io reads and
// writes these names (AUTOMATIC1111's "Sampler", io/a1111_parameters.h) and io sits below sched, while
// the pipeline (resolve) and the app's sampler box reach this header through pipeline/generation.h.
inline const std::vector<std::string>& scheduler_names() {
  // diffusers' DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
  // EulerAncestralDiscreteScheduler, and the last-but-one two with use_karras_sigmas.
  static const std::vector<std::string> names = {"ddim",    "dpmpp2m",        "euler",
                                                 "euler_a", "dpmpp2m_karras", "euler_karras"};
  return names;
}

struct GenerationRequest {
  std::string prompt;
  std::string negative_prompt;
  std::uint64_t seed = 0;
  int steps = 50;
  float cfg_scale = 7.5f;  // classifier-free guidance; <= 1 runs the prompt alone (batch 1), as diffusers
  std::string scheduler;   // one of scheduler_names(); empty: the model's own
  int width = 0;           // pixels, multiples of 8; 0: the model's default size
  int height = 0;
  // Unit-normal initial noise [1, 4, H/8, W/8] instead of the seed's (diffusers' `latents=` argument).
  std::optional<Tensor> initial_noise;
  // Image to image (diffusers' StableDiffusionImg2ImgPipeline): the starting image, encoded by the
  // VAE and noised to the step `strength` of the way up the schedule (img2img_start_step). Resolved,
  // it is RGB at exactly width x height (StableDiffusion::resolve scales and centre-crops it; with no
  // size given, the image's own size rounded down to multiples of 8, as diffusers does).
  std::optional<Image8> init_image{};
  float strength = 0.75f;        // (0, 1]; used only with init_image
  std::string init_image_name{};  // where init_image came from (a file name), for display and records
};

// The first step an image-to-image run takes of a `steps`-step schedule, as diffusers' get_timesteps
// (every fisedit sampler has order 1): init_timestep = min(int(steps * strength), steps), start =
// steps - init_timestep. 0 without an init image. A strength so small that no step would run
// (start == steps) is refused by StableDiffusion::resolve.
// The strength is taken as the decimal it reads as (0.7f as 0.7, like the Python float a diffusers
// user passes), so that 10 steps at 0.7 run 7 steps as there, not int(6.99999988) = 6.
inline int img2img_start_step(int steps, float strength) {
  char text[32];
  const auto written = std::to_chars(text, text + sizeof text, strength);
  double decimal = static_cast<double>(strength);
  std::from_chars(text, written.ptr, decimal);
  const int init_timestep = std::min(static_cast<int>(static_cast<double>(steps) * decimal), steps);
  return std::max(steps - init_timestep, 0);
}
inline int start_step(const GenerationRequest& r) {
  return r.init_image ? img2img_start_step(r.steps, r.strength) : 0;
}

enum class MaskMode { automatic, painted, intersect };

// The automatic mask's margin (latent pixels) the front ends start with (app, fisedit-cli edit,
// fisedit-bench): the detected region grown by two latent pixels (16 image pixels) so it takes in the
// old content's edges and room for a bigger replacement. Measured on the toy world's edit-fidelity
// benchmark (docs/benchmarks.md): margin 0 / 2 / 3 gave edit success 42 / 75 / 79%, IoU with the
// ground-truth region 0.26 / 0.52 / 0.59, mask outside it 8 / 15 / 20%, other objects unchanged
// 92 / 83 / 79%; 0 also left fringes of the old object around a recoloured one.
inline constexpr int kDefaultMaskMargin = 2;
// EditRequest::whole_image_if_global as the front ends start with it: toy-world background changes
// went from a patchwork to a coherent new background (benchmarks.md).
inline constexpr bool kDefaultWholeImageIfGlobal = true;

struct EditRequest {
  std::string prompt{};
  std::string negative_prompt{};
  MaskMode mask_mode = MaskMode::automatic;
  std::optional<Image8> painted_mask{};  // image size, white = may change; needed by painted / intersect
  int margin = 0;                      // dilation of the mask, latent pixels
  int detect_steps = -1;               // dense detection steps; -1: default_detection_steps (painted: none)
  int feather = 8;                     // pixels of blending at the composite's edge
  // Run every layer in full and keep the cached values outside the mask afterwards, instead of
  // running layers at the active positions only: the same image, slower; a reference to check against.
  bool dense_reference = false;
  // Attention control during the detection steps (docs/method.md section 3.3): tokens the new prompt shares
  // with the base prompt take the base generation's cross-attention probabilities, so unchanged
  // content stays still and the mask concentrates where the new words act. Applies to the detection
  // steps for which the base kept its probabilities (default_detection_steps of them).
  bool attention_control = false;
  // Automatic and intersect modes: a change spread over the whole image (another background, another
  // style) re-renders all of it instead of the patches a threshold would cut from it (edit_mask.h).
  // The app, fisedit-cli and fisedit-bench turn it on (kDefaultWholeImageIfGlobal); off here so that
  // engine callers, and the tests of the sparse route on random-weight models, whose every edit moves
  // the whole image, state what they want.
  bool whole_image_if_global = false;
  // Automatic mode only: after the detection steps ran, this latent mask ([h/8, w/8]) replaces the
  // detected one. fisedit-bench times edits of a given size this way, as real automatic edits.
  std::optional<LatentMask> mask_override{};
  // Partly covered U-Net levels of at most this many positions run in full instead of at the active
  // positions (SparseLevels); unset: the default.
  std::optional<std::int64_t> dense_levels_up_to{};
};

}  // namespace fisedit
