#pragma once
// CompVis/LDM checkpoint names -> diffusers names. Input maps have the component prefix
// (model.diffusion_model., first_stage_model., cond_stage_model.model.) already removed.
#include "io/model_loader.h"

namespace fisedit::detail {

// "input_blocks.1.0.in_layers.0.weight" -> "down_blocks.0.resnets.0.norm1.weight", etc.
WeightMap map_unet_keys(const WeightMap& ldm, const std::filesystem::path& file);
// "decoder.up.0.block.1.conv1.weight" -> "decoder.up_blocks.3.resnets.1.conv1.weight"; the mid-block
// attention's 1x1 convolutions become linear weights.
WeightMap map_vae_keys(const WeightMap& ldm, const std::filesystem::path& file);
// OpenCLIP (SD2.x) -> transformers CLIPTextModel names; the fused in_proj is split into q, k, v; only
// the first `layers` residual blocks are kept.
WeightMap map_open_clip_keys(const WeightMap& open_clip, int layers, const std::filesystem::path& file);

}  // namespace fisedit::detail
