#pragma once
// Pieces shared by the folder and single-file loaders.
#include "io/model_loader.h"

namespace fisedit::detail {

LoadedModel load_diffusers_folder(const std::filesystem::path& dir);
LoadedModel load_single_file(const std::filesystem::path& file, const LoadOptions& options);

// Reads the component configs a folder has; leaves the others at their current values.
// Returns which of unet / vae / text_encoder / scheduler were read.
struct ConfigsRead {
  bool unet = false, vae = false, text_encoder = false, scheduler = false;
};
ConfigsRead read_component_configs(const std::filesystem::path& dir, LoadedModel& model);

// SD1.x (CLIP ViT-L, quick_gelu) or SD2.x (OpenCLIP ViT-H, gelu), from the text encoder config.
ModelFamily family_from_text_encoder(const TextEncoderConfig& config);

// Text-encoder names with the transformers-4 "text_model." prefix, whether or not the file had it;
// buffers that are not weights (position_ids) dropped.
WeightMap canonical_text_encoder_names(WeightMap weights);

// Checks that the weights have the shapes the configs imply; throws Error(invalid_argument) when a
// config does not describe these weights.
void check_weights_match_configs(const LoadedModel& model, const std::string& config_origin);

}  // namespace fisedit::detail
