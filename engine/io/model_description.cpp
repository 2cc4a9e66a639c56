// describe_model(): the facts the app's model panel and `fisedit-cli info` show.
#include "io/model_description.h"

#include "io/model_fingerprint.h"

#include <algorithm>
#include <cstdio>

namespace fisedit {
namespace {

template <class T>
std::string joined(const std::vector<T>& values) {
  std::string s;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) s += ", ";
    if constexpr (std::is_same_v<T, std::string>)
      s += values[i];
    else
      s += std::to_string(values[i]);
  }
  return s;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

std::string format_parameter_count(std::int64_t count) {
  char buf[32];
  if (count < 1'000'000) return std::to_string(count);
  if (count < 1'000'000'000)
    std::snprintf(buf, sizeof buf, "%.1fM", static_cast<double>(count) / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.2fB", static_cast<double>(count) / 1e9);
  return buf;
}

ModelDescription describe_model(const LoadedModel& m) {
  ModelDescription d;
  d.source = m.source.string();
  d.format = format_name(m.format);
  d.family = family_name(m.family);
  d.prediction = prediction_name(m.prediction());
  d.scheduler = m.scheduler.class_name + " (" + m.scheduler.timestep_spacing + " spacing)";
  d.fingerprint = model_fingerprint(m);

  const auto& u = m.unet;
  d.unet_channels = joined(u.block_out_channels) + "; " + std::to_string(u.layers_per_block) + " layers per block";
  d.unet_io = "in " + std::to_string(u.in_channels) + ", out " + std::to_string(u.out_channels);
  d.unet_blocks = joined(u.down_block_types);
  // Head width (channels / heads) is what tells SD2.x's 64-wide heads from SD1.x's fixed 8 heads.
  std::vector<int> widths;
  for (std::size_t i = 0; i < u.block_out_channels.size() && i < u.num_attention_heads.size(); ++i)
    widths.push_back(u.block_out_channels[i] / std::max(1, u.num_attention_heads[i]));
  d.unet_heads = joined(u.num_attention_heads) + " (head width " + joined(widths) + ")";
  d.unet_attention = "cross-attention dim " + std::to_string(u.cross_attention_dim) + ", " +
                     (u.use_linear_projection ? "linear" : "1x1 conv") + " projection, upcast " +
                     (u.upcast_attention ? "yes" : "no");
  d.image_size = u.sample_size * 8;

  const auto& t = m.text_encoder;
  d.text_encoder = "width " + std::to_string(t.hidden_size) + ", depth " + std::to_string(t.num_hidden_layers) + ", " +
                   std::to_string(t.num_attention_heads) + " heads, " + t.hidden_act + ", vocab " +
                   std::to_string(t.vocab_size);
  d.vae = joined(m.vae.block_out_channels) + "; latent channels " + std::to_string(m.vae.latent_channels) +
          ", scaling factor " + number(m.vae.scaling_factor);
  d.weight_dtype = std::string(dtype_name(dominant_dtype(m.unet_weights)));
  d.unet_parameters = parameter_count(m.unet_weights);
  d.vae_parameters = parameter_count(m.vae_weights);
  d.text_encoder_parameters = parameter_count(m.text_encoder_weights);
  d.tokenizer = m.tokenizer_dir ? m.tokenizer_dir->string() : std::string();
  d.assumptions = m.assumptions;
  return d;
}

}  // namespace fisedit
