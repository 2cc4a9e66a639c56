#include "models/arch_presets.h"

#include "core/error.h"
#include "core/half.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <memory>
#include <thread>

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

// ---- Random values ---------------------------------------------------------------------------------

// splitmix64's output function: a counter-based generator, so any element can be computed alone.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::uint64_t name_hash(const std::string& s) {  // FNV-1a
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// Normal quantiles at the 65,536 midpoints: z[u] = Phi^-1((u + 0.5) / 65536), by Acklam's rational
// approximation (relative error 1.2e-9). One 16-bit uniform then gives one normal value by table lookup,
// with tails to 4.3 sigma (no outlier can overflow fp16), and no log or sqrt per value.
const std::vector<float>& normal_quantiles() {
  static const std::vector<float> table = [] {
    constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                            1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
    constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                            6.680131188771972e+01,  -1.328068155288572e+01};
    constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                            -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
    constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                            3.754408661907416e+00};
    const auto tail = [&](double p) {  // p < 0.02425: the lower tail
      const double q = std::sqrt(-2 * std::log(p));
      return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
             ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    };
    std::vector<float> z(65536);
    for (std::size_t u = 0; u < z.size(); ++u) {
      const double p = (static_cast<double>(u) + 0.5) / 65536.0;
      double x;
      if (p < 0.02425) {
        x = tail(p);
      } else if (p > 1 - 0.02425) {
        x = -tail(1 - p);
      } else {
        const double q = p - 0.5, r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
      }
      z[u] = static_cast<float>(x);
    }
    return z;
  }();
  return table;
}

// Element e of a tensor: the (e % 4)-th 16-bit quarter of mix64(key + (e / 4 + 1) * golden ratio).
std::uint32_t uniform16(std::uint64_t key, std::int64_t e) {
  const std::uint64_t bits = mix64(key + static_cast<std::uint64_t>(e / 4 + 1) * 0x9e3779b97f4a7c15ull);
  return static_cast<std::uint32_t>(bits >> (16 * (e % 4))) & 0xffffu;
}

float init_std(const WeightSpec& s) {
  if (s.init == WeightInit::embedding) return 0.02f;
  std::int64_t fan_in = 1;
  for (std::size_t i = 1; i < s.shape.size(); ++i) fan_in *= s.shape[i];
  return s.gain / std::sqrt(static_cast<float>(std::max<std::int64_t>(fan_in, 1)));
}

}  // namespace

const std::vector<std::string>& arch_preset_names() {
  static const std::vector<std::string> names = {"sd15-512", "sd2-512", "sd2-768", "tiny-sd2", "tiny-sd15"};
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

WeightMap random_weights(const std::vector<WeightSpec>& specs, std::uint64_t seed, int threads) {
  // Work items of at most 1M values, so one 50M-value embedding table spreads over all threads too.
  constexpr std::int64_t kChunk = 1 << 20;
  struct Item {
    std::size_t spec;
    std::int64_t begin, end;
  };
  std::vector<std::shared_ptr<std::uint16_t[]>> buffers;
  std::vector<Item> items;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const std::int64_t n = shape_numel(specs[i].shape);
    buffers.push_back(std::make_shared_for_overwrite<std::uint16_t[]>(static_cast<std::size_t>(n)));
    for (std::int64_t b = 0; b < n; b += kChunk) items.push_back({i, b, std::min(n, b + kChunk)});
  }
  std::atomic<std::size_t> next{0};
  const auto work = [&] {
    while (true) {
      const std::size_t k = next.fetch_add(1);
      if (k >= items.size()) return;
      const auto& [i, begin, end] = items[k];
      const auto& spec = specs[i];
      std::uint16_t* out = buffers[i].get();
      if (spec.init == WeightInit::zeros || spec.init == WeightInit::ones) {
        std::fill(out + begin, out + end, float_to_half(spec.init == WeightInit::ones ? 1.0f : 0.0f));
        continue;
      }
      // Values are fp16 bits straight from a per-scale table: a lookup per value instead of a float
      // conversion. Chunks too short to repay the table convert directly (the same values).
      const float std_dev = init_std(spec);
      const std::uint64_t key = mix64(seed ^ name_hash(spec.name));
      const auto& z = normal_quantiles();
      if (end - begin < static_cast<std::int64_t>(z.size())) {
        for (std::int64_t e = begin; e < end; ++e) out[e] = float_to_half(std_dev * z[uniform16(key, e)]);
        continue;
      }
      thread_local std::vector<std::uint16_t> half_table(z.size());
      thread_local float table_std = -1.0f;
      if (table_std != std_dev) {
        for (std::size_t u = 0; u < z.size(); ++u) half_table[u] = float_to_half(std_dev * z[u]);
        table_std = std_dev;
      }
      std::int64_t e = begin;
      for (; e < end && e % 4; ++e) out[e] = half_table[uniform16(key, e)];
      for (; e + 4 <= end; e += 4) {
        const std::uint64_t bits = mix64(key + static_cast<std::uint64_t>(e / 4 + 1) * 0x9e3779b97f4a7c15ull);
        for (int q = 0; q < 4; ++q) out[e + q] = half_table[(bits >> (16 * q)) & 0xffff];
      }
      for (; e < end; ++e) out[e] = half_table[uniform16(key, e)];
    }
  };
  const int n_threads = threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::jthread> pool;
  for (int t = 1; t < n_threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();  // joins

  WeightMap out;
  for (std::size_t i = 0; i < specs.size(); ++i)
    out.emplace(specs[i].name, Tensor(DType::f16, specs[i].shape, reinterpret_cast<const std::byte*>(buffers[i].get()),
                                      buffers[i]));
  return out;
}

LoadedModel random_model(const ArchPreset& preset, const RandomModelOptions& options) {
  LoadedModel m;
  m.source = "random-" + preset.name;
  m.format = ModelFormat::diffusers_folder;
  m.family = preset.family;
  m.unet = preset.unet;
  m.vae = preset.vae;
  m.text_encoder = preset.text_encoder;
  m.scheduler = preset.scheduler;
  m.tokenizer_dir = options.tokenizer_dir;
  // Each component gets its own stream of values, so changing one config leaves the others' weights alone.
  m.unet_weights = random_weights(unet_weight_specs(preset.unet), options.seed ^ 0x756e6574ull, options.threads);
  m.vae_weights = random_weights(vae_weight_specs(preset.vae), options.seed ^ 0x766165ull, options.threads);
  m.text_encoder_weights =
      random_weights(text_encoder_weight_specs(preset.text_encoder), options.seed ^ 0x74657874ull, options.threads);
  m.assumptions.push_back("random weights with the architecture of " + preset.description);
  return m;
}

}  // namespace fisedit
