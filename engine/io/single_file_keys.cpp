// A single-file checkpoint's U-Net, VAE and OpenCLIP keys renamed to diffusers names (single_file_keys.h).
#include "io/single_file_keys.h"

#include "core/error.h"

#include <charconv>
#include <optional>

namespace fisedit::detail {
namespace {

[[noreturn]] void unknown_key(const std::filesystem::path& file, const std::string& component, const std::string& key) {
  throw Error(ErrorCode::unsupported, file.string() + ": unrecognised " + component + " weight '" + key +
                                          "' (not a Stable Diffusion 1.x/2.x layout)");
}

// Parses "<number>.<rest>" at the start of `s`.
std::optional<std::pair<int, std::string>> take_index(const std::string& s) {
  int value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end == s.data() || end == s.data() + s.size() || *end != '.' || value < 0) return std::nullopt;
  return std::pair{value, std::string(end + 1)};
}

std::string replace_prefix(const std::string& s, const std::string& from, const std::string& to) {
  return s.starts_with(from) ? to + s.substr(from.size()) : s;
}

// Names inside an LDM ResBlock.
std::string resnet_name(const std::string& rest) {
  static const std::pair<const char*, const char*> renames[] = {
      {"in_layers.0.", "norm1."}, {"in_layers.2.", "conv1."},   {"emb_layers.1.", "time_emb_proj."},
      {"out_layers.0.", "norm2."}, {"out_layers.3.", "conv2."}, {"skip_connection.", "conv_shortcut."},
  };
  for (const auto& [from, to] : renames)
    if (rest.starts_with(from)) return to + rest.substr(std::string(from).size());
  return {};
}

// Number of input blocks per down level: the resnets plus one downsampler. The first input block
// holding a downsampler ("N.0.op.") is number layers_per_block + 1.
int input_blocks_per_level(const WeightMap& ldm, const std::filesystem::path& file) {
  // The lowest numbered downsampler (keys sort as text: block 12 comes before block 3).
  std::optional<std::pair<int, std::string>> first_downsampler;
  for (const auto& [key, t] : ldm) {
    if (!key.starts_with("input_blocks.")) continue;
    const auto parsed = take_index(key.substr(13));
    if (parsed && parsed->second.starts_with("0.op.") && (!first_downsampler || parsed->first < first_downsampler->first))
      first_downsampler = std::pair{parsed->first, key};
  }
  if (first_downsampler) {
    // Block 0 is conv_in and every level holds at least one resnet before its downsampler.
    const auto& [block, key] = *first_downsampler;
    if (block < 2)
      throw Error(ErrorCode::corrupt_file, file.string() + ": U-Net weight '" + key + "' puts a downsampler at input block " +
                                               std::to_string(block) + " (the first one can be no earlier than block 2)");
    return block;
  }
  // A U-Net with a single level has no downsampler; then every input block but conv_in is a level-0 layer.
  int blocks = 0;
  for (const auto& [key, t] : ldm)
    if (key.starts_with("input_blocks."))
      if (const auto parsed = take_index(key.substr(13))) blocks = std::max(blocks, parsed->first + 1);
  if (blocks < 2) throw Error(ErrorCode::corrupt_file, file.string() + ": U-Net has no input blocks");
  return blocks;
}

}  // namespace

WeightMap map_unet_keys(const WeightMap& ldm, const std::filesystem::path& file) {
  const int per_level = input_blocks_per_level(ldm, file);  // layers_per_block + 1
  WeightMap out;
  for (const auto& [key, t] : ldm) {
    std::string name;
    if (key.starts_with("time_embed.0.")) {
      name = replace_prefix(key, "time_embed.0.", "time_embedding.linear_1.");
    } else if (key.starts_with("time_embed.2.")) {
      name = replace_prefix(key, "time_embed.2.", "time_embedding.linear_2.");
    } else if (key.starts_with("input_blocks.0.0.")) {
      name = replace_prefix(key, "input_blocks.0.0.", "conv_in.");
    } else if (key.starts_with("out.0.")) {
      name = replace_prefix(key, "out.0.", "conv_norm_out.");
    } else if (key.starts_with("out.2.")) {
      name = replace_prefix(key, "out.2.", "conv_out.");
    } else if (key.starts_with("input_blocks.")) {
      const auto block = take_index(key.substr(13));
      const auto layer = block ? take_index(block->second) : std::nullopt;
      if (!layer || block->first < 1) unknown_key(file, "U-Net", key);
      const int level = (block->first - 1) / per_level;
      const int index = (block->first - 1) % per_level;
      const auto base = "down_blocks." + std::to_string(level) + ".";
      if (layer->first == 0 && layer->second.starts_with("op."))
        name = base + "downsamplers.0.conv." + layer->second.substr(3);
      else if (layer->first == 0 && !resnet_name(layer->second).empty())
        name = base + "resnets." + std::to_string(index) + "." + resnet_name(layer->second);
      else if (layer->first == 1)
        name = base + "attentions." + std::to_string(index) + "." + layer->second;
    } else if (key.starts_with("middle_block.")) {
      const auto layer = take_index(key.substr(13));
      if (layer && (layer->first == 0 || layer->first == 2) && !resnet_name(layer->second).empty())
        name = "mid_block.resnets." + std::to_string(layer->first / 2) + "." + resnet_name(layer->second);
      else if (layer && layer->first == 1)
        name = "mid_block.attentions.0." + layer->second;
    } else if (key.starts_with("output_blocks.")) {
      const auto block = take_index(key.substr(14));
      const auto layer = block ? take_index(block->second) : std::nullopt;
      if (!layer) unknown_key(file, "U-Net", key);
      const auto base = "up_blocks." + std::to_string(block->first / per_level) + ".";
      const int index = block->first % per_level;
      if (layer->first == 0 && !resnet_name(layer->second).empty())
        name = base + "resnets." + std::to_string(index) + "." + resnet_name(layer->second);
      else if (layer->second.starts_with("conv.") && layer->first >= 1)  // the upsampler follows the last layer
        name = base + "upsamplers.0.conv." + layer->second.substr(5);
      else if (layer->first == 1)
        name = base + "attentions." + std::to_string(index) + "." + layer->second;
    }
    if (name.empty()) unknown_key(file, "U-Net", key);
    out.emplace(std::move(name), t);
  }
  return out;
}

WeightMap map_vae_keys(const WeightMap& ldm, const std::filesystem::path& file) {
  int up_levels = 0;
  for (const auto& [key, t] : ldm)
    if (key.starts_with("decoder.up."))
      if (const auto parsed = take_index(key.substr(11))) up_levels = std::max(up_levels, parsed->first + 1);

  static const std::pair<const char*, const char*> attention_renames[] = {
      {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};
  auto resnet = [](const std::string& rest) { return replace_prefix(rest, "nin_shortcut.", "conv_shortcut."); };

  WeightMap out;
  for (const auto& [key, t] : ldm) {
    std::string name;
    Tensor tensor = t;
    const auto dot = key.find('.');
    const std::string coder = key.substr(0, dot);  // "encoder", "decoder", "quant_conv", "post_quant_conv"
    const std::string rest = dot == std::string::npos ? std::string() : key.substr(dot + 1);
    if (coder == "quant_conv" || coder == "post_quant_conv") {
      name = key;
    } else if (coder == "encoder" || coder == "decoder") {
      const auto p = coder + ".";
      if (rest.starts_with("conv_in.") || rest.starts_with("conv_out.")) {
        name = key;
      } else if (rest.starts_with("norm_out.")) {
        name = p + replace_prefix(rest, "norm_out.", "conv_norm_out.");
      } else if (rest.starts_with("mid.block_1.") || rest.starts_with("mid.block_2.")) {
        name = p + "mid_block.resnets." + (rest[10] == '1' ? "0." : "1.") + resnet(rest.substr(12));
      } else if (rest.starts_with("mid.attn_1.")) {
        const auto inner = rest.substr(11);
        for (const auto& [from, to] : attention_renames)
          if (inner.starts_with(from)) name = p + "mid_block.attentions.0." + to + inner.substr(std::string(from).size());
        if (tensor.rank() == 4) tensor = tensor.reshaped({tensor.dim(0), tensor.dim(1)});  // 1x1 conv -> linear
      } else if (rest.starts_with(coder == "encoder" ? "down." : "up.")) {
        const auto level = take_index(rest.substr(coder == "encoder" ? 5 : 3));
        if (level) {
          // LDM numbers decoder levels from the lowest resolution up; diffusers from the top down.
          const int l = coder == "encoder" ? level->first : up_levels - 1 - level->first;
          const auto base = p + (coder == "encoder" ? "down_blocks." : "up_blocks.") + std::to_string(l) + ".";
          const auto& inner = level->second;
          if (const auto block = inner.starts_with("block.") ? take_index(inner.substr(6)) : std::nullopt)
            name = base + "resnets." + std::to_string(block->first) + "." + resnet(block->second);
          else if (inner.starts_with("downsample.conv."))
            name = base + "downsamplers.0.conv." + inner.substr(16);
          else if (inner.starts_with("upsample.conv."))
            name = base + "upsamplers.0.conv." + inner.substr(14);
        }
      }
    }
    if (name.empty()) unknown_key(file, "VAE", key);
    out.emplace(std::move(name), tensor);
  }
  return out;
}

WeightMap map_open_clip_keys(const WeightMap& open_clip, int layers, const std::filesystem::path& file) {
  static const std::pair<const char*, const char*> block_renames[] = {
      {"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."}, {"mlp.c_fc.", "mlp.fc1."},
      {"mlp.c_proj.", "mlp.fc2."}, {"attn.out_proj.", "self_attn.out_proj."}};
  WeightMap out;
  for (const auto& [key, t] : open_clip) {
    if (key == "token_embedding.weight") {
      out.emplace("text_model.embeddings.token_embedding.weight", t);
    } else if (key == "positional_embedding") {
      out.emplace("text_model.embeddings.position_embedding.weight", t);
    } else if (key.starts_with("ln_final.")) {
      out.emplace(replace_prefix(key, "ln_final.", "text_model.final_layer_norm."), t);
    } else if (key == "text_projection" || key == "logit_scale" || key == "attn_mask") {
      continue;  // the image-text projection and training buffers: not part of SD's conditioning
    } else if (key.starts_with("transformer.resblocks.")) {
      const auto block = take_index(key.substr(22));
      if (!block) unknown_key(file, "text encoder", key);
      if (block->first >= layers) continue;
      const auto base = "text_model.encoder.layers." + std::to_string(block->first) + ".";
      const auto& inner = block->second;
      if (inner == "attn.in_proj_weight" || inner == "attn.in_proj_bias") {
        // q, k and v stacked along the first dimension, in that order.
        if (t.rank() < 1 || t.dim(0) % 3 != 0)
          throw Error(ErrorCode::corrupt_file, file.string() + ": '" + key + "' has shape " + shape_to_string(t.shape()) +
                                                   ", not three stacked projections");
        const auto width = t.dim(0) / 3;
        const std::string suffix = inner.ends_with("weight") ? "weight" : "bias";
        out.emplace(base + "self_attn.q_proj." + suffix, t.slice_rows(0, width));
        out.emplace(base + "self_attn.k_proj." + suffix, t.slice_rows(width, 2 * width));
        out.emplace(base + "self_attn.v_proj." + suffix, t.slice_rows(2 * width, 3 * width));
        continue;
      }
      std::string name;
      for (const auto& [from, to] : block_renames)
        if (inner.starts_with(from)) name = base + to + inner.substr(std::string(from).size());
      if (name.empty()) unknown_key(file, "text encoder", key);
      out.emplace(std::move(name), t);
    } else {
      unknown_key(file, "text encoder", key);
    }
  }
  return out;
}

}  // namespace fisedit::detail
