#include "models/demo_model.h"

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "models/arch_presets.h"

#include <nlohmann/json.hpp>

#include <string>

namespace fisedit {
namespace {

// GPT-2's byte-to-unicode table, which CLIP's byte-level BPE uses: printable bytes map to themselves,
// the others to code points from 256 up, so every byte is a visible character.
std::string byte_symbol(int byte) {
  static const auto table = [] {
    std::vector<int> cp(256, -1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      cp[static_cast<std::size_t>(b)] = printable ? b : next++;
    }
    return cp;
  }();
  const int c = table[static_cast<std::size_t>(byte)];
  std::string utf8;
  if (c < 0x80) {
    utf8 += static_cast<char>(c);
  } else {
    utf8 += static_cast<char>(0xC0 | (c >> 6));
    utf8 += static_cast<char>(0x80 | (c & 0x3F));
  }
  return utf8;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  AtomicFile out(path);
  out.write(reinterpret_cast<const std::byte*>(text.data()), text.size());
  out.commit();
}

void write_json(const std::filesystem::path& path, const nlohmann::json& j) { write_text(path, j.dump(2) + "\n"); }

void write_weights(const std::filesystem::path& path, const WeightMap& weights) {
  NamedTensors tensors(weights.begin(), weights.end());
  write_safetensors(path, tensors, {{"format", "pt"}});
}

nlohmann::json unet_json(const UNetConfig& c) {
  return {{"_class_name", "UNet2DConditionModel"}, {"in_channels", c.in_channels}, {"out_channels", c.out_channels},
          {"block_out_channels", c.block_out_channels}, {"layers_per_block", c.layers_per_block},
          {"down_block_types", c.down_block_types}, {"up_block_types", c.up_block_types},
          {"mid_block_type", c.mid_block_type}, {"attention_head_dim", c.num_attention_heads},
          {"cross_attention_dim", c.cross_attention_dim}, {"use_linear_projection", c.use_linear_projection},
          {"upcast_attention", c.upcast_attention}, {"norm_num_groups", c.norm_num_groups}, {"norm_eps", c.norm_eps},
          {"flip_sin_to_cos", c.flip_sin_to_cos}, {"freq_shift", c.freq_shift}, {"sample_size", c.sample_size}};
}

nlohmann::json vae_json(const VaeConfig& c) {
  return {{"_class_name", "AutoencoderKL"}, {"in_channels", c.in_channels}, {"out_channels", c.out_channels},
          {"latent_channels", c.latent_channels}, {"block_out_channels", c.block_out_channels},
          {"layers_per_block", c.layers_per_block}, {"norm_num_groups", c.norm_num_groups},
          {"scaling_factor", c.scaling_factor}, {"sample_size", c.sample_size}};
}

nlohmann::json text_json(const TextEncoderConfig& c) {
  return {{"architectures", {"CLIPTextModel"}}, {"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads}, {"max_position_embeddings", c.max_position_embeddings},
          {"hidden_act", c.hidden_act}, {"layer_norm_eps", c.layer_norm_eps}};
}

}  // namespace

void write_demo_model(const std::filesystem::path& dir) {
  auto preset = arch_preset("tiny-sd15");
  preset.unet.sample_size = 32;  // 256x256 images: big enough to paint on, quick on a CPU
  preset.vae.sample_size = 256;

  // Byte-level vocabulary: each byte alone and at a word's end, then the special tokens.
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = id++;
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b) + "</w>"] = id++;
  vocab["<|startoftext|>"] = id++;
  vocab["<|endoftext|>"] = id++;
  preset.text_encoder.vocab_size = id;

  for (const auto* sub : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}) std::filesystem::create_directories(dir / sub);
  write_json(dir / "tokenizer" / "vocab.json", vocab);
  write_text(dir / "tokenizer" / "merges.txt", "#version: 0.2\n");
  write_json(dir / "tokenizer" / "tokenizer_config.json",
             {{"bos_token", "<|startoftext|>"}, {"eos_token", "<|endoftext|>"}, {"unk_token", "<|endoftext|>"},
              {"pad_token", "<|endoftext|>"}, {"model_max_length", 77}, {"tokenizer_class", "CLIPTokenizer"}});
  write_json(dir / "unet" / "config.json", unet_json(preset.unet));
  write_json(dir / "vae" / "config.json", vae_json(preset.vae));
  write_json(dir / "text_encoder" / "config.json", text_json(preset.text_encoder));
  write_json(dir / "scheduler" / "scheduler_config.json", preset.scheduler.raw);
  RandomModelOptions options;
  options.seed = 20261126;
  const auto model = random_model(preset, options);
  write_weights(dir / "unet" / "diffusion_pytorch_model.safetensors", model.unet_weights);
  write_weights(dir / "vae" / "diffusion_pytorch_model.safetensors", model.vae_weights);
  write_weights(dir / "text_encoder" / "model.safetensors", model.text_encoder_weights);
  // Written last: a folder with model_index.json is a complete model.
  write_json(dir / "model_index.json",
             {{"_class_name", "StableDiffusionPipeline"}, {"_fisedit_demo", true},
              {"scheduler", {"diffusers", preset.scheduler.class_name}}, {"text_encoder", {"transformers", "CLIPTextModel"}},
              {"tokenizer", {"transformers", "CLIPTokenizer"}}, {"unet", {"diffusers", "UNet2DConditionModel"}},
              {"vae", {"diffusers", "AutoencoderKL"}}});
}

}  // namespace fisedit
