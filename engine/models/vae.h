#pragma once
// AutoencoderKL's decoder (latents -> image) and encoder (image -> latent distribution), module for
// module as diffusers builds them from the VAE config, on channels-last activations. Each half loads
// on its own: text-to-image needs only the decoder.
//
// Spatial factor: 2^(levels - 1), 8 for every SD VAE. GroupNorms use the config's group count and
// eps 1e-6, the value diffusers hard-codes for the VAE.
#include "io/model_config.h"
#include "io/model_loader.h"
#include "models/layers.h"
#include "models/resnet.h"

#include <optional>
#include <vector>

namespace fisedit {

// diffusers' Attention as the VAE's mid block builds it: GroupNorm, one head over all H * W
// positions (head width = channels), to_out.0, and the residual.
struct VaeAttention {
  GroupNorm group_norm;
  Linear to_q, to_k, to_v, to_out;

  static VaeAttention load(const WeightSource& w, const std::string& prefix, std::int64_t channels, int groups);
  // [N, H, W, C] -> [N, H, W, C]
  DeviceTensor forward(Backend& b, const DeviceTensor& x, NormTape* tape = nullptr) const;
};

// UNetMidBlock2D: resnet, attention (unless the config turns it off), resnet.
struct VaeMidBlock {
  std::vector<ResnetBlock2D> resnets;
  std::optional<VaeAttention> attention;

  static VaeMidBlock load(const WeightSource& w, const std::string& prefix, std::int64_t channels,
                          const VaeConfig& config);
  // [N, H, W, C] -> [N, H, W, C]
  DeviceTensor forward(Backend& b, const DeviceTensor& x, NormTape* tape = nullptr) const;
};

class VaeDecoder {
public:
  // Weights named as in diffusers ("decoder.up_blocks.0.resnets.0.conv1.weight", "post_quant_conv...").
  VaeDecoder(Backend& backend, const VaeConfig& config, const WeightMap& weights);

  // z [N, h, w, latent_channels] -> image [N, 8h, 8w, out_channels], about [-1, 1]. Like diffusers'
  // vae.decode, z is unscaled: the diffusion latents divided by config().scaling_factor.
  // `tape` keeps the GroupNorm statistics, or replays those of a decode of the whole image (a crop).
  DeviceTensor decode(const DeviceTensor& z, NormTape* tape = nullptr) const;
  const VaeConfig& config() const { return config_; }

private:
  struct UpBlock {  // UpDecoderBlock2D
    std::vector<ResnetBlock2D> resnets;
    std::optional<Conv2d> upsampler;  // upsamplers.0.conv, after a nearest 2x upsample
  };

  Backend& backend_;
  VaeConfig config_;
  std::optional<Conv2d> post_quant_conv_;
  Conv2d conv_in_;
  VaeMidBlock mid_block_;
  std::vector<UpBlock> up_blocks_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

class VaeEncoder {
public:
  // Weights named as in diffusers ("encoder.down_blocks.0.resnets.0.conv1.weight", "quant_conv...").
  VaeEncoder(Backend& backend, const VaeConfig& config, const WeightMap& weights);

  // image [N, H, W, in_channels] in [-1, 1] -> moments [N, H/8, W/8, 2 * latent_channels]: the
  // latent distribution's mean, then its log-variance.
  DeviceTensor moments(const DeviceTensor& image) const;
  // image [N, H, W, in_channels] -> latent_dist.mean [N, H/8, W/8, latent_channels] (unscaled).
  DeviceTensor encode_mean(const DeviceTensor& image) const;
  const VaeConfig& config() const { return config_; }

private:
  struct DownBlock {  // DownEncoderBlock2D
    std::vector<ResnetBlock2D> resnets;
    std::optional<Conv2d> downsampler;  // downsamplers.0.conv: stride 2 after padding right and bottom
  };

  Backend& backend_;
  VaeConfig config_;
  Conv2d conv_in_;
  std::vector<DownBlock> down_blocks_;
  VaeMidBlock mid_block_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
  std::optional<Conv2d> quant_conv_;
};

}  // namespace fisedit
