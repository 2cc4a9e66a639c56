#pragma once
// AUTOMATIC1111's "parameters" PNG text: written for a request, and read back from ours or theirs.
#include "io/request.h"

#include <cstdint>
#include <optional>
#include <string>

namespace fisedit {

// A sampler's AUTOMATIC1111 spelling ("DDIM", "DPM++ 2M", "Euler", "Euler a", "DPM++ 2M Karras",
// "Euler Karras") for one of scheduler_names(): the single name of A1111 before 1.9, which later
// versions still read (they split a trailing schedule type off the name).
std::string a1111_sampler_name(const std::string& scheduler);

// The "parameters" text AUTOMATIC1111 writes into its PNGs (and reads back):
//   prompt \n Negative prompt: ... \n Steps: N, Sampler: S, CFG scale: F, Seed: N, Size: WxH, Model: M
// and for image to image (an init_image), as A1111's img2img tab: ..., Model: M, Denoising strength: F
std::string a1111_parameters(const GenerationRequest& resolved, const std::string& model_name);

// What a "parameters" text (ours or AUTOMATIC1111's, including its longer key lists and quoted values)
// says about an image: the prompts always (the whole text is the prompt when no parameter line
// follows), the rest where present and understood. The sampler is read in both of A1111's forms: one
// name ("Sampler: DPM++ 2M Karras") and, from 1.9 on, name and schedule ("Sampler: DPM++ 2M, Schedule
// type: Karras"; "Uniform" is the plain sigmas, "Automatic" the sampler's default there: Karras for
// DPM++ 2M, plain for the others). A sampler fisedit does not
// have (e.g. "DPM++ SDE", or "Euler a" on Karras sigmas) leaves `scheduler` unset and is named in
// `unknown_sampler`, in the single-name form.
struct ImageParameters {
  std::string prompt, negative_prompt;
  std::optional<std::uint64_t> seed;
  std::optional<int> steps, width, height;
  std::optional<float> cfg_scale;
  std::optional<std::string> scheduler;  // one of scheduler_names()
  std::optional<float> denoising_strength;  // "Denoising strength: 0.75": an image-to-image result
  std::string unknown_sampler;
};
ImageParameters parse_a1111_parameters(const std::string& text);

}  // namespace fisedit
