#pragma once
// The facts about a loaded model that the front ends show (the app's model panel, `fisedit-cli info`),
// assembled once, as display-ready text and numbers.
#include "io/model_loader.h"

#include <cstdint>
#include <string>
#include <vector>

namespace fisedit {

struct ModelDescription {
  std::string source;       // the path the model was loaded from
  std::string format;       // "diffusers folder" / "single-file checkpoint"
  std::string family;       // "SD1.x" / "SD2.x"
  std::string prediction;   // "epsilon" / "v_prediction"
  std::string scheduler;    // "DDIMScheduler (leading spacing)"
  std::string fingerprint;  // model_fingerprint()
  std::string unet_channels;   // "320, 640, 1280, 1280; 2 layers per block"
  std::string unet_io;         // "in 4, out 4"
  std::string unet_blocks;     // "CrossAttnDownBlock2D, ..., DownBlock2D"
  std::string unet_heads;      // "5, 10, 20, 20 (head width 64, 64, 64, 64)"
  std::string unet_attention;  // "cross-attention dim 1024, linear projection, upcast no"
  int image_size = 512;        // the default width and height, pixels
  std::string text_encoder;    // "width 1024, depth 23, 16 heads, gelu, vocab 49408"
  std::string vae;             // "128, 256, 512, 512; latent channels 4, scaling factor 0.18215"
  std::string weight_dtype;    // the U-Net's dominant weight dtype, e.g. "F16"
  std::int64_t unet_parameters = 0, vae_parameters = 0, text_encoder_parameters = 0;
  std::int64_t total_parameters() const { return unet_parameters + vae_parameters + text_encoder_parameters; }
  std::string tokenizer;       // the tokenizer folder, or empty when the model has none
  std::vector<std::string> assumptions;  // what the loader assumed (LoadedModel::assumptions)
};

ModelDescription describe_model(const LoadedModel& model);

// Short enough for a form row: "865.9M", "1.07B"; exact below a million, where tiny test models live.
std::string format_parameter_count(std::int64_t count);

}  // namespace fisedit
