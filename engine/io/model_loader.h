#pragma once
// Loading a Stable Diffusion 1.x/2.x model in the forms users have it: a diffusers pipeline folder
// (weights in one file or sharded) or a single-file LDM checkpoint (.safetensors, as AUTOMATIC1111 and
// ComfyUI users keep them). Either way the result has diffusers tensor names, e.g.
// "down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight", and text-encoder names in the
// transformers-4 layout ("text_model.encoder.layers.0..."). Tensors are views of the mapped files.
#include "core/tensor.h"
#include "io/model_config.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fisedit {

enum class ModelFormat { diffusers_folder, single_file };
const char* format_name(ModelFormat f);

using WeightMap = std::map<std::string, Tensor>;

struct LoadOptions {
  // A diffusers-style folder whose component config.json files (unet/, vae/, text_encoder/,
  // scheduler/) and tokenizer/ describe a single-file checkpoint, like diffusers'
  // from_single_file(config=...). Ignored for diffusers folders, which carry their own.
  std::optional<std::filesystem::path> config_dir;
};

struct LoadedModel {
  std::filesystem::path source;
  ModelFormat format = ModelFormat::diffusers_folder;
  ModelFamily family = ModelFamily::sd1;
  UNetConfig unet;
  VaeConfig vae;
  TextEncoderConfig text_encoder;
  SchedulerConfig scheduler;
  std::optional<std::filesystem::path> tokenizer_dir;  // none for a single file without a config
  WeightMap unet_weights;
  WeightMap vae_weights;
  WeightMap text_encoder_weights;
  // What was assumed rather than read (e.g. head counts from the SD2.x rules), shown by `info`.
  std::vector<std::string> assumptions;

  PredictionType prediction() const { return scheduler.prediction_type; }
};

// Throws Error with a message that names the file and says what to do.
LoadedModel load_model(const std::filesystem::path& path, const LoadOptions& options = {});

// Throws Error(io) naming the file when a weights file of `model` was truncated or rewritten in place
// under its mapping since it was loaded, and a read of its weights found it so (io/mapped_file.h):
// weights read since then hold zeros. Readers call it after reading the weights (load_model does).
void check_weights_intact(const LoadedModel& model);

// Sum of element counts.
std::int64_t parameter_count(const WeightMap& weights);
// The dtype most of the parameters are stored in.
DType dominant_dtype(const WeightMap& weights);

}  // namespace fisedit
