#include "cli/commands.h"

#include "cli/arguments.h"
#include "core/error.h"
#include "io/model_loader.h"
#include "text/clip_tokenizer.h"

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace fisedit::cli {
namespace {

LoadedModel load_from(const Arguments& args) {
  LoadOptions options;
  if (auto config = args.get("config")) options.config_dir = *config;
  return load_model(args.require("model"), options);
}

template <class T>
std::string list(const std::vector<T>& v) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? ", " : "") << v[i];
  s << "]";
  return s.str();
}

std::string millions(std::int64_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld (%.1fM)", static_cast<long long>(n), static_cast<double>(n) / 1e6);
  return buf;
}

}  // namespace

int tokenize_command(const std::vector<std::string>& raw) {
  const Arguments args(raw, {"model", "config"});
  if (args.positional().size() != 1)
    throw std::invalid_argument("give exactly one TEXT to tokenize (quote it), e.g. fisedit-cli tokenize --model M \"a cat\"");
  const auto model = load_from(args);
  if (!model.tokenizer_dir)
    throw Error(ErrorCode::not_found, model.source.string() +
                                          ": a single-file checkpoint carries no tokenizer; pass --config DIR, a diffusers folder with tokenizer/");
  const auto tokenizer = ClipTokenizer::from_folder(*model.tokenizer_dir);
  const auto ids = tokenizer.encode(args.positional()[0]);
  std::string line;
  for (std::size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
  std::printf("%s\n", line.c_str());
  return 0;
}

int info_command(const std::vector<std::string>& raw) {
  const Arguments args(raw, {"model", "config"});
  if (!args.positional().empty()) throw std::invalid_argument("unexpected argument '" + args.positional()[0] + "'");
  const auto m = load_from(args);
  const auto& u = m.unet;
  std::vector<int> head_widths;
  for (std::size_t i = 0; i < u.block_out_channels.size(); ++i)
    head_widths.push_back(u.block_out_channels[i] / u.num_attention_heads[i]);
  const auto unet_params = parameter_count(m.unet_weights);
  const auto vae_params = parameter_count(m.vae_weights);
  const auto text_params = parameter_count(m.text_encoder_weights);

  std::printf("source:            %s\n", m.source.string().c_str());
  std::printf("format:            %s\n", format_name(m.format));
  std::printf("family:            %s\n", family_name(m.family));
  std::printf("prediction:        %s\n", prediction_name(m.prediction()));
  std::printf("scheduler:         %s (%s spacing)\n", m.scheduler.class_name.c_str(), m.scheduler.timestep_spacing.c_str());
  std::printf("unet channels:     %s, %d layers per block, in %d, out %d\n", list(u.block_out_channels).c_str(),
              u.layers_per_block, u.in_channels, u.out_channels);
  std::printf("unet blocks:       %s\n", list(u.down_block_types).c_str());
  std::printf("unet heads:        %s (head width %s)\n", list(u.num_attention_heads).c_str(), list(head_widths).c_str());
  std::printf("unet attention:    cross-attention dim %d, %s projection, upcast %s\n", u.cross_attention_dim,
              u.use_linear_projection ? "linear" : "1x1 conv", u.upcast_attention ? "yes" : "no");
  std::printf("default size:      %dx%d\n", u.sample_size * 8, u.sample_size * 8);
  std::printf("text encoder:      width %d, depth %d, %d heads, %s, vocab %d\n", m.text_encoder.hidden_size,
              m.text_encoder.num_hidden_layers, m.text_encoder.num_attention_heads, m.text_encoder.hidden_act.c_str(),
              m.text_encoder.vocab_size);
  std::printf("vae channels:      %s, latent channels %d, scaling factor %g\n", list(m.vae.block_out_channels).c_str(),
              m.vae.latent_channels, static_cast<double>(m.vae.scaling_factor));
  std::printf("weight dtype:      %s\n", std::string(dtype_name(dominant_dtype(m.unet_weights))).c_str());
  std::printf("parameters:        unet %s, vae %s, text encoder %s, total %s\n", millions(unet_params).c_str(),
              millions(vae_params).c_str(), millions(text_params).c_str(),
              millions(unet_params + vae_params + text_params).c_str());
  std::printf("tokenizer:         %s\n", m.tokenizer_dir ? m.tokenizer_dir->string().c_str() : "none");
  for (const auto& a : m.assumptions) std::printf("assumed:           %s\n", a.c_str());
  return 0;
}

}  // namespace fisedit::cli
