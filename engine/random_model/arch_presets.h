#pragma once
// The architectures of the real Stable Diffusion checkpoints, built in, and models of those
// architectures with random weights. Real weights cannot be downloaded everywhere fisedit is built and
// tested, yet speed and memory must be measured (fisedit-bench) and the CUDA backend checked (GPU tests)
// at full size: a random model has every tensor the real one has, under the same diffusers names and
// shapes, so it costs exactly what the real model costs.
//
// Presets:
//   sd15-512   SD 1.5: CLIP ViT-L text encoder, 8 heads, conv projections, epsilon, 512x512
//   sd2-512    SD 2.1-base: OpenCLIP ViT-H (penultimate layer), 64-wide heads, linear projections, epsilon
//   sd2-768    SD 2.1: as sd2-512 at 768x768, v-prediction
//   tiny-sd2   the reference tiny-sd2 architecture (../shared/reference), for fast tests
//   tiny-sd15  the reference tiny-sd15 architecture
//   toyworld   the built-in toy-world model (resources/models/toyworld), 256x256
#include "io/model_config.h"
#include "io/model_loader.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fisedit {

struct ArchPreset {
  std::string name;
  std::string description;  // e.g. "Stable Diffusion 2.1 (768x768, v-prediction)"
  ModelFamily family = ModelFamily::sd1;
  UNetConfig unet;
  VaeConfig vae;
  TextEncoderConfig text_encoder;
  SchedulerConfig scheduler;
};

const std::vector<std::string>& arch_preset_names();
// Throws Error(invalid_argument) naming the presets for an unknown name.
ArchPreset arch_preset(std::string_view name);

// How a random weight is initialised. fan_in: normal(0, gain / sqrt(fan_in)) (quantised to 65,536
// levels, tails cut at 4.3 sigma) with
// fan_in = the product of all dimensions but the first (torch's Linear/Conv2d fan-in), so each layer
// keeps its input's scale; embedding: normal(0, 0.02) as CLIP initialises its tables.
enum class WeightInit { fan_in, zeros, ones, embedding };

struct WeightSpec {
  std::string name;  // diffusers name, e.g. "down_blocks.0.attentions.1.proj_in.weight"
  Shape shape;
  WeightInit init = WeightInit::fan_in;
  float gain = 1.0f;
};

// Every weight of the component, with diffusers (U-Net, VAE) and transformers-4 (text encoder) names,
// exactly the tensors a diffusers folder of that configuration holds (buffers such as position_ids
// excluded, as the loader drops them).
std::vector<WeightSpec> unet_weight_specs(const UNetConfig& config);
std::vector<WeightSpec> vae_weight_specs(const VaeConfig& config);
std::vector<WeightSpec> text_encoder_weight_specs(const TextEncoderConfig& config);

// F16 host tensors for `specs`. Each value is a pure function of (seed, tensor name, index), so the
// result does not depend on `threads` (0: one per CPU).
WeightMap random_weights(const std::vector<WeightSpec>& specs, std::uint64_t seed, int threads = 0);

struct RandomModelOptions {
  std::uint64_t seed = 0;
  int threads = 0;
  // A CLIP tokenizer folder (vocab.json + merges.txt, or tokenizer.json): presets have none of their own.
  std::optional<std::filesystem::path> tokenizer_dir;
};

// The preset's configs with random weights, as load_model would return the real model. The U-Net's
// conv_out starts small (gain 0.1) so that its predictions, amplified by classifier-free guidance,
// keep latents in a realistic range over a full sampling run.
LoadedModel random_model(const ArchPreset& preset, const RandomModelOptions& options = {});

}  // namespace fisedit
