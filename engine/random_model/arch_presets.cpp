// The built-in architectures (arch_presets.h): the real checkpoints' and the toy model's configs, weight lists.
#include "random_model/arch_presets.h"

#include "core/error.h"

#include <string>

namespace fisedit {
namespace {

using nlohmann::json;

const json kCrossAttnDown = {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"};
const json kCrossAttnUp = {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};

// The configs are written as the checkpoints' own config.json files are, and read by the same parsers,
// so a preset means exactly what loading the real folder would mean.
UNetConfig unet_config(const std::string& preset, json channels, json heads, int cross, bool sd2, int sample) {
  const json j = {{"block_out_channels", channels},  {"attention_head_dim", heads},
                  {"cross_attention_dim", cross},    {"use_linear_projection", sd2},
                  {"upcast_attention", sd2},         {"sample_size", sample},
                  {"down_block_types", kCrossAttnDown}, {"up_block_types", kCrossAttnUp},
                  {"layers_per_block", 2},           {"in_channels", 4},
                  {"out_channels", 4},               {"norm_num_groups", 32}};
  return UNetConfig::from_json(j, "preset " + preset + " (unet)");
}

VaeConfig vae_config(const std::string& preset, json channels, int sample) {
  const json j = {{"block_out_channels", channels}, {"layers_per_block", 2},   {"latent_channels", 4},
                  {"norm_num_groups", 32},          {"scaling_factor", 0.18215}, {"sample_size", sample}};
  return VaeConfig::from_json(j, "preset " + preset + " (vae)");
}

TextEncoderConfig text_config(const std::string& preset, int hidden, int inner, int layers, int heads, bool sd2) {
  const json j = {{"hidden_size", hidden},      {"intermediate_size", inner},
                  {"num_hidden_layers", layers}, {"num_attention_heads", heads},
                  {"hidden_act", sd2 ? "gelu" : "quick_gelu"}, {"vocab_size", 49408},
                  {"max_position_embeddings", 77}, {"layer_norm_eps", 1e-5}};
  return TextEncoderConfig::from_json(j, "preset " + preset + " (text_encoder)");
}

// SD2.x and the tiny models ship DDIM; SD1.5 ships PNDM, which the pipeline runs as DDIM.
SchedulerConfig scheduler_config(const std::string& preset, const char* class_name, const char* prediction) {
  const json j = {{"_class_name", class_name},  {"beta_start", 0.00085},     {"beta_end", 0.012},
                  {"beta_schedule", "scaled_linear"}, {"num_train_timesteps", 1000}, {"prediction_type", prediction},
                  {"timestep_spacing", "leading"}, {"steps_offset", 1},       {"set_alpha_to_one", false},
                  {"clip_sample", false},       {"skip_prk_steps", true}};
  return SchedulerConfig::from_json(j, "preset " + preset + " (scheduler)");
}

// The toy-world model (training/toyworld): sized so that a 20-step CFG generation at 256x256 takes
// about a second on two CPU cores and the fp16 weights stay under 16 MB. Its folder's configs are these
// (test_arch_presets checks that they agree).
UNetConfig toyworld_unet() {
  const json j = {{"block_out_channels", {64, 96, 128}},
                  {"attention_head_dim", {2, 3, 4}},
                  {"cross_attention_dim", 128},
                  {"use_linear_projection", true},
                  {"upcast_attention", false},
                  {"sample_size", 32},
                  {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
                  {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
                  {"layers_per_block", 1},
                  {"in_channels", 4},
                  {"out_channels", 4},
                  {"norm_num_groups", 32}};
  return UNetConfig::from_json(j, "preset toyworld (unet)");
}

VaeConfig toyworld_vae() {
  const json j = {{"block_out_channels", {32, 64, 64, 64}}, {"layers_per_block", 1}, {"latent_channels", 4},
                  {"norm_num_groups", 16},  {"scaling_factor", 0.4362641767779909}, {"sample_size", 256}};
  return VaeConfig::from_json(j, "preset toyworld (vae)");
}

TextEncoderConfig toyworld_text_encoder() {
  const json j = {{"hidden_size", 128},     {"intermediate_size", 512}, {"num_hidden_layers", 4},
                  {"num_attention_heads", 4}, {"hidden_act", "quick_gelu"}, {"vocab_size", 623},
                  {"max_position_embeddings", 77}, {"layer_norm_eps", 1e-5}};
  return TextEncoderConfig::from_json(j, "preset toyworld (text_encoder)");
}

// ---- Weight names ---------------------------------------------------------------------------------

class SpecList {
public:
  void weight(const std::string& name, Shape shape, float gain = 1.0f) {
    specs_.push_back({name + ".weight", std::move(shape), WeightInit::fan_in, gain});
  }
  void bias(const std::string& name, std::int64_t n) { specs_.push_back({name + ".bias", {n}, WeightInit::zeros}); }
  void linear(const std::string& name, std::int64_t in, std::int64_t out, bool has_bias = true) {
    weight(name, {out, in});
    if (has_bias) bias(name, out);
  }
  void conv(const std::string& name, std::int64_t in, std::int64_t out, std::int64_t k, float gain = 1.0f) {
    weight(name, {out, in, k, k}, gain);
    bias(name, out);
  }
  void norm(const std::string& name, std::int64_t channels) {
    specs_.push_back({name + ".weight", {channels}, WeightInit::ones});
    bias(name, channels);
  }
  void embedding(const std::string& name, std::int64_t rows, std::int64_t width) {
    specs_.push_back({name + ".weight", {rows, width}, WeightInit::embedding});
  }
  // ResnetBlock2D; temb 0 for the VAE's blocks, which have no time embedding.
  void resnet(const std::string& p, std::int64_t in, std::int64_t out, std::int64_t temb) {
    norm(p + ".norm1", in);
    conv(p + ".conv1", in, out, 3);
    if (temb > 0) linear(p + ".time_emb_proj", temb, out);
    norm(p + ".norm2", out);
    conv(p + ".conv2", out, out, 3);
    if (in != out) conv(p + ".conv_shortcut", in, out, 1);
  }
  // Transformer2DModel with one BasicTransformerBlock (SD 1.x/2.x).
  void transformer(const std::string& p, std::int64_t ch, std::int64_t context, bool linear_projection) {
    norm(p + ".norm", ch);
    const auto projection = [&](const std::string& name) {
      if (linear_projection)
        linear(name, ch, ch);
      else
        conv(name, ch, ch, 1);
    };
    projection(p + ".proj_in");
    const auto b = p + ".transformer_blocks.0";
    for (const char* n : {".norm1", ".norm2", ".norm3"}) norm(b + n, ch);
    for (const auto& [attn, kv] : {std::pair{".attn1", ch}, std::pair{".attn2", context}}) {
      linear(b + attn + ".to_q", ch, ch, false);
      linear(b + attn + ".to_k", kv, ch, false);
      linear(b + attn + ".to_v", kv, ch, false);
      linear(b + attn + ".to_out.0", ch, ch);
    }
    linear(b + ".ff.net.0.proj", ch, 8 * ch);  // GEGLU: value and gate, 4C each
    linear(b + ".ff.net.2", 4 * ch, ch);
    projection(p + ".proj_out");
  }
  // The VAE's mid block: resnet, single-head attention, resnet.
  void vae_mid_block(const std::string& p, std::int64_t ch, bool attention) {
    resnet(p + ".resnets.0", ch, ch, 0);
    if (attention) {
      norm(p + ".attentions.0.group_norm", ch);
      for (const char* n : {".to_q", ".to_k", ".to_v", ".to_out.0"}) linear(p + ".attentions.0" + n, ch, ch);
    }
    resnet(p + ".resnets.1", ch, ch, 0);
  }
  std::vector<WeightSpec> take() { return std::move(specs_); }

private:
  std::vector<WeightSpec> specs_;
};

}  // namespace

const std::vector<std::string>& arch_preset_names() {
  static const std::vector<std::string> names = {"sd15-512", "sd2-512", "sd2-768", "tiny-sd2", "tiny-sd15", "toyworld"};
  return names;
}

ArchPreset arch_preset(std::string_view name_view) {
  const std::string name(name_view);
  ArchPreset p;
  p.name = name;
  if (name == "sd15-512") {
    p.description = "Stable Diffusion 1.5 (512x512, epsilon)";
    p.unet = unet_config(name, {320, 640, 1280, 1280}, 8, 768, false, 64);
    p.text_encoder = text_config(name, 768, 3072, 12, 12, false);
    p.vae = vae_config(name, {128, 256, 512, 512}, 512);
    p.scheduler = scheduler_config(name, "PNDMScheduler", "epsilon");
  } else if (name == "sd2-512" || name == "sd2-768") {
    const bool v = name == "sd2-768";
    p.description = v ? "Stable Diffusion 2.1 (768x768, v-prediction)" : "Stable Diffusion 2.1-base (512x512, epsilon)";
    // diffusers' "attention_head_dim" [5, 10, 20, 20] is the head count: 64-wide heads.
    p.unet = unet_config(name, {320, 640, 1280, 1280}, {5, 10, 20, 20}, 1024, true, v ? 96 : 64);
    p.text_encoder = text_config(name, 1024, 4096, 23, 16, true);  // OpenCLIP ViT-H, penultimate layer
    p.vae = vae_config(name, {128, 256, 512, 512}, v ? 768 : 512);
    p.scheduler = scheduler_config(name, "DDIMScheduler", v ? "v_prediction" : "epsilon");
  } else if (name == "tiny-sd2" || name == "tiny-sd15") {
    const bool sd2 = name == "tiny-sd2";
    p.description = std::string("the reference ") + name + " architecture (tiny, for tests)";
    p.unet = unet_config(name, {32, 64, 64, 64}, sd2 ? json{2, 4, 4, 4} : json(8), 32, sd2, 16);
    p.text_encoder = text_config(name, 32, 64, sd2 ? 23 : 4, 4, sd2);
    p.vae = vae_config(name, {32, 32, 64, 64}, 128);
    p.scheduler = scheduler_config(name, "DDIMScheduler", sd2 ? "v_prediction" : "epsilon");
  } else if (name == "toyworld") {
    p.description = "the built-in toy-world model (256x256, epsilon; resources/models/toyworld)";
    p.unet = toyworld_unet();
    p.text_encoder = toyworld_text_encoder();
    p.vae = toyworld_vae();
    p.scheduler = scheduler_config(name, "DDIMScheduler", "epsilon");
  } else {
    std::string known;
    for (const auto& n : arch_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::invalid_argument, "unknown architecture '" + name + "' (known: " + known + ")");
  }
  p.family = p.text_encoder.hidden_act == "gelu" ? ModelFamily::sd2 : ModelFamily::sd1;
  return p;
}

std::vector<WeightSpec> unet_weight_specs(const UNetConfig& c) {
  SpecList s;
  const auto& ch = c.block_out_channels;
  const std::size_t levels = ch.size();
  const std::int64_t c0 = ch[0], temb = c.time_embed_dim(), context = c.cross_attention_dim;
  s.linear("time_embedding.linear_1", c0, temb);
  s.linear("time_embedding.linear_2", temb, temb);
  s.conv("conv_in", c.in_channels, c0, 3);
  std::int64_t channels = c0;
  for (std::size_t level = 0; level < levels; ++level) {
    const auto p = "down_blocks." + std::to_string(level);
    for (int i = 0; i < c.layers_per_block; ++i) {
      s.resnet(p + ".resnets." + std::to_string(i), i == 0 ? channels : ch[level], ch[level], temb);
      if (c.level_has_attention(level))
        s.transformer(p + ".attentions." + std::to_string(i), ch[level], context, c.use_linear_projection);
    }
    if (level + 1 < levels) s.conv(p + ".downsamplers.0.conv", ch[level], ch[level], 3);
    channels = ch[level];
  }
  for (int i = 0; i < 2; ++i) s.resnet("mid_block.resnets." + std::to_string(i), ch.back(), ch.back(), temb);
  s.transformer("mid_block.attentions.0", ch.back(), context, c.use_linear_projection);
  // Up level i mirrors down level (levels - 1 - i); see models/unet.cpp for the skip channel counts.
  for (std::size_t i = 0; i < levels; ++i) {
    const std::size_t mirror = levels - 1 - i;
    const auto p = "up_blocks." + std::to_string(i);
    const std::int64_t out = ch[mirror], skip_from_above = ch[mirror == 0 ? 0 : mirror - 1];
    const bool attention = c.up_block_types[i].find("CrossAttn") != std::string::npos;
    for (int j = 0; j <= c.layers_per_block; ++j) {
      s.resnet(p + ".resnets." + std::to_string(j), channels + (j == c.layers_per_block ? skip_from_above : out), out, temb);
      if (attention) s.transformer(p + ".attentions." + std::to_string(j), out, context, c.use_linear_projection);
      channels = out;
    }
    if (i + 1 < levels) s.conv(p + ".upsamplers.0.conv", out, out, 3);
  }
  s.norm("conv_norm_out", c0);
  s.conv("conv_out", c0, c.out_channels, 3, 0.1f);
  return s.take();
}

std::vector<WeightSpec> vae_weight_specs(const VaeConfig& c) {
  SpecList s;
  const auto& ch = c.block_out_channels;
  const std::size_t levels = ch.size();
  const std::int64_t latent = c.latent_channels, top = ch.back();
  s.conv("encoder.conv_in", c.in_channels, ch[0], 3);
  std::int64_t previous = ch[0];
  for (std::size_t i = 0; i < levels; ++i) {
    const auto p = "encoder.down_blocks." + std::to_string(i);
    for (int j = 0; j < c.layers_per_block; ++j) s.resnet(p + ".resnets." + std::to_string(j), j == 0 ? previous : ch[i], ch[i], 0);
    if (i + 1 < levels) s.conv(p + ".downsamplers.0.conv", ch[i], ch[i], 3);
    previous = ch[i];
  }
  s.vae_mid_block("encoder.mid_block", top, c.mid_block_add_attention);
  s.norm("encoder.conv_norm_out", top);
  s.conv("encoder.conv_out", top, 2 * latent, 3);
  if (c.use_quant_conv) s.conv("quant_conv", 2 * latent, 2 * latent, 1);
  if (c.use_post_quant_conv) s.conv("post_quant_conv", latent, latent, 1);
  s.conv("decoder.conv_in", latent, top, 3);
  s.vae_mid_block("decoder.mid_block", top, c.mid_block_add_attention);
  previous = top;
  for (std::size_t i = 0; i < levels; ++i) {
    const std::int64_t out = ch[levels - 1 - i];
    const auto p = "decoder.up_blocks." + std::to_string(i);
    for (int j = 0; j <= c.layers_per_block; ++j) s.resnet(p + ".resnets." + std::to_string(j), j == 0 ? previous : out, out, 0);
    if (i + 1 < levels) s.conv(p + ".upsamplers.0.conv", out, out, 3);
    previous = out;
  }
  s.norm("decoder.conv_norm_out", ch[0]);
  s.conv("decoder.conv_out", ch[0], c.out_channels, 3);
  return s.take();
}

std::vector<WeightSpec> text_encoder_weight_specs(const TextEncoderConfig& c) {
  SpecList s;
  const std::int64_t hidden = c.hidden_size;
  s.embedding("text_model.embeddings.token_embedding", c.vocab_size, hidden);
  s.embedding("text_model.embeddings.position_embedding", c.max_position_embeddings, hidden);
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    const auto p = "text_model.encoder.layers." + std::to_string(i);
    s.norm(p + ".layer_norm1", hidden);
    for (const char* n : {".q_proj", ".k_proj", ".v_proj", ".out_proj"}) s.linear(p + ".self_attn" + n, hidden, hidden);
    s.norm(p + ".layer_norm2", hidden);
    s.linear(p + ".mlp.fc1", hidden, c.intermediate_size);
    s.linear(p + ".mlp.fc2", c.intermediate_size, hidden);
  }
  s.norm("text_model.final_layer_norm", hidden);
  return s.take();
}

}  // namespace fisedit
