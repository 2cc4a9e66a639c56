// fisedit-cli info and tokenize: what a model is and what was assumed, and a prompt's token ids.
#include "cli/commands.h"

#include "cli/arguments.h"
#include "core/error.h"
#include "io/model_description.h"
#include "io/model_loader.h"
#include "pipeline/generation.h"
#include "sched/scheduler.h"
#include "text/clip_tokenizer.h"
#include "text/prompt_weights.h"

#include <cstdio>
#include <stdexcept>

namespace fisedit::cli {
namespace {

LoadedModel load_from(const Arguments& args) {
  LoadOptions options;
  if (auto config = args.get("config")) options.config_dir = *config;
  return load_model(args.require("model"), options);
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
  // What the text encoder reads: one line of 77 ids per chunk of 75 tokens (text/prompt_weights.h),
  // the emphasis syntax taken out.
  for (const auto& chunk : encoder_chunks(tokenizer, args.positional()[0])) {
    std::string line;
    for (std::size_t i = 0; i < chunk.ids.size(); ++i) line += (i ? " " : "") + std::to_string(chunk.ids[i]);
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

int info_command(const std::vector<std::string>& raw) {
  const Arguments args(raw, {"model", "config"});
  if (!args.positional().empty()) throw std::invalid_argument("unexpected argument '" + args.positional()[0] + "'");
  // What generate checks before it runs, so that info does not report a model generate then refuses.
  const auto model = load_from(args);
  if (model.tokenizer_dir)
    check_tokenizer_fits_encoder(ClipTokenizer::from_folder(*model.tokenizer_dir), model.text_encoder.vocab_size,
                                 model.text_encoder.max_position_embeddings, model.text_encoder.source);
  make_scheduler(sampler_for_config(model.scheduler), model.scheduler)->set_timesteps(50);
  const auto d = describe_model(model);
  std::printf("source:            %s\n", d.source.c_str());
  std::printf("format:            %s\n", d.format.c_str());
  std::printf("family:            %s\n", d.family.c_str());
  std::printf("prediction:        %s\n", d.prediction.c_str());
  std::printf("scheduler:         %s\n", d.scheduler.c_str());
  std::printf("fingerprint:       %s\n", d.fingerprint.c_str());
  std::printf("unet channels:     %s; %s\n", d.unet_channels.c_str(), d.unet_io.c_str());
  std::printf("unet blocks:       %s\n", d.unet_blocks.c_str());
  std::printf("unet heads:        %s\n", d.unet_heads.c_str());
  std::printf("unet attention:    %s\n", d.unet_attention.c_str());
  std::printf("default size:      %dx%d\n", d.image_size, d.image_size);
  std::printf("text encoder:      %s\n", d.text_encoder.c_str());
  std::printf("vae channels:      %s\n", d.vae.c_str());
  std::printf("weight dtype:      %s\n", d.weight_dtype.c_str());
  std::printf("parameters:        unet %s, vae %s, text encoder %s, total %s\n", millions(d.unet_parameters).c_str(),
              millions(d.vae_parameters).c_str(), millions(d.text_encoder_parameters).c_str(),
              millions(d.total_parameters()).c_str());
  std::printf("tokenizer:         %s\n", d.tokenizer.empty() ? "none" : d.tokenizer.c_str());
  for (const auto& a : d.assumptions) std::printf("assumed:           %s\n", a.c_str());
  return 0;
}

}  // namespace fisedit::cli
