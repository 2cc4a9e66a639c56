// The VAE's decoder and encoder (vae.h), module by module.
#include "models/vae.h"

#include "core/error.h"

#include <cmath>

namespace fisedit {
namespace {

// diffusers builds every VAE GroupNorm (resnets, attention, conv_norm_out) with eps 1e-6.
constexpr float kVaeEps = 1e-6f;

void check_config(const VaeConfig& config) {
  if (config.block_out_channels.empty() || config.layers_per_block < 1 || config.latent_channels < 1)
    throw Error(ErrorCode::invalid_argument,
                "VAE config: block_out_channels, layers_per_block and latent_channels must be positive");
}

void check_input(const char* what, const DeviceTensor& x, std::int64_t channels) {
  if (x.rank() != 4 || x.dim(3) != channels)
    throw Error(ErrorCode::invalid_argument, std::string(what) + " " + shape_to_string(x.shape()) +
                                                 " is not [N, H, W, " + std::to_string(channels) + "]");
}

}  // namespace

VaeAttention VaeAttention::load(const WeightSource& w, const std::string& prefix, std::int64_t channels, int groups) {
  return {
      GroupNorm::load(w, prefix + ".group_norm", channels, groups, kVaeEps),
      Linear::load(w, prefix + ".to_q", channels, channels),
      Linear::load(w, prefix + ".to_k", channels, channels),
      Linear::load(w, prefix + ".to_v", channels, channels),
      Linear::load(w, prefix + ".to_out.0", channels, channels),
  };
}

DeviceTensor VaeAttention::forward(Backend& b, const DeviceTensor& x, NormTape* tape) const {
  const std::int64_t n = x.dim(0), c = x.dim(3);
  // [N, H, W, C] -> [N, H * W, C]: positions are the tokens.
  const auto t = group_norm.forward(b, x, false, tape).reshaped({n, x.numel() / (n * c), c});
  const AttentionParams params{.heads = 1, .scale = 1.0f / std::sqrt(static_cast<float>(c)), .upcast = true};
  const auto a = b.attention(to_q.forward(b, t), to_k.forward(b, t), to_v.forward(b, t), params);
  // [N, H * W, C] -> [N, H, W, C]
  return to_out.forward_add(b, a, x.reshaped(a.shape())).reshaped(x.shape());
}

VaeMidBlock VaeMidBlock::load(const WeightSource& w, const std::string& prefix, std::int64_t channels,
                              const VaeConfig& config) {
  const int groups = config.norm_num_groups;
  VaeMidBlock m;
  m.resnets.push_back(ResnetBlock2D::load(w, prefix + ".resnets.0", channels, channels, groups, kVaeEps));
  if (config.mid_block_add_attention) m.attention = VaeAttention::load(w, prefix + ".attentions.0", channels, groups);
  m.resnets.push_back(ResnetBlock2D::load(w, prefix + ".resnets.1", channels, channels, groups, kVaeEps));
  return m;
}

DeviceTensor VaeMidBlock::forward(Backend& b, const DeviceTensor& x, NormTape* tape) const {
  // [N, H, W, C] -> [N, H, W, C]
  auto h = resnets[0].forward(b, x, tape);
  if (attention) h = attention->forward(b, h, tape);
  return resnets[1].forward(b, h, tape);
}

VaeDecoder::VaeDecoder(Backend& backend, const VaeConfig& config, const WeightMap& weights)
    : backend_(backend), config_(config) {
  check_config(config);
  const WeightSource w(backend, weights, "VAE");
  const auto& channels = config.block_out_channels;
  const std::int64_t latent = config.latent_channels, top = channels.back();
  const int groups = config.norm_num_groups;
  const auto same = Conv2dParams::same(1, 1);
  if (config.use_post_quant_conv) post_quant_conv_ = Conv2d::load(w, "post_quant_conv", latent, latent, 1, {});
  conv_in_ = Conv2d::load(w, "decoder.conv_in", latent, top, 3, same);
  mid_block_ = VaeMidBlock::load(w, "decoder.mid_block", top, config);
  std::int64_t previous = top;
  const auto levels = channels.size();
  for (std::size_t i = 0; i < levels; ++i) {
    const std::int64_t out = channels[levels - 1 - i];
    const auto prefix = "decoder.up_blocks." + std::to_string(i);
    UpBlock block;
    for (int j = 0; j <= config.layers_per_block; ++j)
      block.resnets.push_back(ResnetBlock2D::load(w, prefix + ".resnets." + std::to_string(j), j == 0 ? previous : out,
                                                  out, groups, kVaeEps));
    if (i + 1 < levels) block.upsampler = Conv2d::load(w, prefix + ".upsamplers.0.conv", out, out, 3, same);
    up_blocks_.push_back(std::move(block));
    previous = out;
  }
  conv_norm_out_ = GroupNorm::load(w, "decoder.conv_norm_out", channels.front(), groups, kVaeEps);
  conv_out_ = Conv2d::load(w, "decoder.conv_out", channels.front(), config.out_channels, 3, same);
}

DeviceTensor VaeDecoder::decode(const DeviceTensor& z, NormTape* tape) const {
  check_input("VAE decoder: latents", z, config_.latent_channels);
  auto& b = backend_;
  // [N, h, w, latent] -> [N, h, w, top]
  auto x = conv_in_.forward(b, post_quant_conv_ ? post_quant_conv_->forward(b, z) : z);
  x = mid_block_.forward(b, x, tape);
  // [N, h, w, top] -> [N, 8h, 8w, block_out_channels[0]]: each level but the last doubles the size.
  for (const auto& block : up_blocks_) {
    for (const auto& resnet : block.resnets) x = resnet.forward(b, x, tape);
    if (block.upsampler) x = block.upsampler->forward(b, b.upsample_nearest2x(x));
  }
  // [N, 8h, 8w, C0] -> [N, 8h, 8w, out_channels]
  return conv_out_.forward(b, conv_norm_out_.forward(b, x, /*silu=*/true, tape));
}

VaeEncoder::VaeEncoder(Backend& backend, const VaeConfig& config, const WeightMap& weights)
    : backend_(backend), config_(config) {
  check_config(config);
  const WeightSource w(backend, weights, "VAE");
  const auto& channels = config.block_out_channels;
  const std::int64_t moments = 2 * config.latent_channels, top = channels.back();
  const int groups = config.norm_num_groups;
  const auto same = Conv2dParams::same(1, 1);
  // diffusers' Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then a 3x3 stride-2 convolution.
  const Conv2dParams downsample{.stride = 2, .pad_top = 0, .pad_bottom = 1, .pad_left = 0, .pad_right = 1};
  conv_in_ = Conv2d::load(w, "encoder.conv_in", config.in_channels, channels.front(), 3, same);
  std::int64_t previous = channels.front();
  for (std::size_t i = 0; i < channels.size(); ++i) {
    const std::int64_t out = channels[i];
    const auto prefix = "encoder.down_blocks." + std::to_string(i);
    DownBlock block;
    for (int j = 0; j < config.layers_per_block; ++j)
      block.resnets.push_back(ResnetBlock2D::load(w, prefix + ".resnets." + std::to_string(j), j == 0 ? previous : out,
                                                  out, groups, kVaeEps));
    if (i + 1 < channels.size())
      block.downsampler = Conv2d::load(w, prefix + ".downsamplers.0.conv", out, out, 3, downsample);
    down_blocks_.push_back(std::move(block));
    previous = out;
  }
  mid_block_ = VaeMidBlock::load(w, "encoder.mid_block", top, config);
  conv_norm_out_ = GroupNorm::load(w, "encoder.conv_norm_out", top, groups, kVaeEps);
  conv_out_ = Conv2d::load(w, "encoder.conv_out", top, moments, 3, same);
  if (config.use_quant_conv) quant_conv_ = Conv2d::load(w, "quant_conv", moments, moments, 1, {});
}

DeviceTensor VaeEncoder::moments(const DeviceTensor& image) const {
  check_input("VAE encoder: image", image, config_.in_channels);
  auto& b = backend_;
  // [N, H, W, in] -> [N, H, W, C0]
  auto x = conv_in_.forward(b, image);
  // [N, H, W, C0] -> [N, H/8, W/8, top]: each level but the last halves the size.
  for (const auto& block : down_blocks_) {
    for (const auto& resnet : block.resnets) x = resnet.forward(b, x);
    if (block.downsampler) x = block.downsampler->forward(b, x);
  }
  x = mid_block_.forward(b, x);
  // [N, H/8, W/8, top] -> [N, H/8, W/8, 2 * latent]
  x = conv_out_.forward(b, conv_norm_out_.forward(b, x, /*silu=*/true));
  return quant_conv_ ? quant_conv_->forward(b, x) : x;
}

DeviceTensor VaeEncoder::encode_mean(const DeviceTensor& image) const {
  // [N, H, W, in] -> [N, H/8, W/8, latent]: the first half of the moments.
  return backend_.slice_channels(moments(image), 0, config_.latent_channels);
}

}  // namespace fisedit
