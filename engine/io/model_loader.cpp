// Loading a model (model_loader.h): the format, pickle refusal, and the checks both loaders share.
#include "io/model_loader.h"

#include "core/error.h"
#include "io/json_file.h"
#include "io/mapped_file.h"
#include "io/model_loader_internal.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <fstream>

namespace fisedit {
namespace {

bool has_pickle_extension(const std::filesystem::path& p) {
  auto ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".ckpt" || ext == ".pt" || ext == ".pth" || ext == ".bin" || ext == ".pkl";
}

// A zip archive (torch.save since 1.6) or a raw pickle stream, whatever the file is called.
bool looks_like_pickle(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::array<unsigned char, 4> head{};
  if (!in.read(reinterpret_cast<char*>(head.data()), head.size())) return false;
  const bool zip = head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4;
  const bool pickle = head[0] == 0x80 && head[1] >= 2 && head[1] <= 5;
  return zip || pickle;
}

[[noreturn]] void refuse_pickle(const std::filesystem::path& p) {
  const auto out = std::filesystem::path(p).replace_extension(".safetensors").string();
  throw Error(ErrorCode::unsupported,
              p.string() + ": is a pickled PyTorch checkpoint; fisedit does not open pickles because loading one can "
                           "run arbitrary code. Convert it once to safetensors, e.g.: python -c \"import torch, "
                           "safetensors.torch as st; sd = torch.load('" + p.string() +
                  "', map_location='cpu', weights_only=True); sd = sd.get('state_dict', sd); "
                  "st.save_file({k: v.contiguous() for k, v in sd.items() if torch.is_tensor(v)}, '" + out + "')\"");
}

// Whether `n` values at `p` include a NaN or an infinity: all exponent bits set. One pass of integer ANDs
// and ORs over chunks, which the compiler vectorises; the exact position is looked for only on a hit.
template <class Bits>
std::optional<std::int64_t> first_non_finite(const std::byte* p, std::int64_t n, Bits exponent) {
  constexpr std::int64_t kChunk = 4096;
  for (std::int64_t start = 0; start < n; start += kChunk) {
    const std::int64_t end = std::min(n, start + kChunk);
    Bits any = 0;
    for (std::int64_t i = start; i < end; ++i) {
      Bits v;
      std::memcpy(&v, p + i * sizeof(Bits), sizeof(Bits));
      any |= static_cast<Bits>(((v & exponent) == exponent) ? 1 : 0);
    }
    if (any)
      for (std::int64_t i = start; i < end; ++i) {
        Bits v;
        std::memcpy(&v, p + i * sizeof(Bits), sizeof(Bits));
        if ((v & exponent) == exponent) return i;
      }
  }
  return std::nullopt;
}

// Every floating-point weight finite: one NaN or infinity turns the whole image black.
void check_finite(const WeightMap& weights, const char* component, const std::filesystem::path& source) {
  for (const auto& [name, t] : weights) {
    std::optional<std::int64_t> at;
    switch (t.dtype()) {
      case DType::f32: at = first_non_finite<std::uint32_t>(t.data(), t.numel(), 0x7f800000u); break;
      case DType::f16: at = first_non_finite<std::uint16_t>(t.data(), t.numel(), 0x7c00u); break;
      case DType::bf16: at = first_non_finite<std::uint16_t>(t.data(), t.numel(), 0x7f80u); break;
      case DType::f64: at = first_non_finite<std::uint64_t>(t.data(), t.numel(), 0x7ff0000000000000ull); break;
      default: break;
    }
    if (at)
      throw Error(ErrorCode::corrupt_file, source.string() + ": " + component + " weight '" + name + "' holds NaN or infinity (element " +
                                               std::to_string(*at) + " of " + std::to_string(t.numel()) + ")");
  }
}

}  // namespace

const char* format_name(ModelFormat f) {
  return f == ModelFormat::diffusers_folder ? "diffusers folder" : "single-file checkpoint";
}

LoadedModel load_model(const std::filesystem::path& path, const LoadOptions& options) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status))
    throw Error(ErrorCode::not_found, path.string() + ": no such file or folder (expected a diffusers folder or a .safetensors checkpoint)");
  LoadedModel model;
  if (std::filesystem::is_directory(status)) {
    model = detail::load_diffusers_folder(path);
  } else {
    if (has_pickle_extension(path) || looks_like_pickle(path)) refuse_pickle(path);
    model = detail::load_single_file(path, options);
  }
  // Named by the file, or the component's folder of a pipeline folder (whose weights may be sharded).
  const bool folder = model.format == ModelFormat::diffusers_folder;
  check_finite(model.unet_weights, "U-Net", folder ? path / "unet" : path);
  check_finite(model.vae_weights, "VAE", folder ? path / "vae" : path);
  check_finite(model.text_encoder_weights, "text encoder", folder ? path / "text_encoder" : path);
  check_weights_intact(model);  // the scan above read every float weight
  return model;
}

void check_weights_intact(const LoadedModel& model) {
  for (const WeightMap* weights : {&model.unet_weights, &model.vae_weights, &model.text_encoder_weights})
    for (const auto& [name, t] : *weights) check_mapped_intact({t.data(), t.nbytes()});
}

std::int64_t parameter_count(const WeightMap& weights) {
  std::int64_t n = 0;
  for (const auto& [name, t] : weights) n += t.numel();
  return n;
}

DType dominant_dtype(const WeightMap& weights) {
  std::map<DType, std::int64_t> count;
  for (const auto& [name, t] : weights) count[t.dtype()] += t.numel();
  auto best = std::max_element(count.begin(), count.end(), [](auto& a, auto& b) { return a.second < b.second; });
  return best == count.end() ? DType::f32 : best->first;
}

namespace detail {

ConfigsRead read_component_configs(const std::filesystem::path& dir, LoadedModel& model) {
  ConfigsRead read;
  auto config = [&](const char* component) { return dir / component / "config.json"; };
  if (std::filesystem::exists(config("unet"))) {
    model.unet = UNetConfig::from_json(read_json_file(config("unet")), config("unet"));
    read.unet = true;
  }
  if (std::filesystem::exists(config("vae"))) {
    model.vae = VaeConfig::from_json(read_json_file(config("vae")), config("vae"));
    read.vae = true;
  }
  if (std::filesystem::exists(config("text_encoder"))) {
    model.text_encoder = TextEncoderConfig::from_json(read_json_file(config("text_encoder")), config("text_encoder"));
    read.text_encoder = true;
  }
  const auto sched = dir / "scheduler" / "scheduler_config.json";
  if (std::filesystem::exists(sched)) {
    model.scheduler = SchedulerConfig::from_json(read_json_file(sched), sched);
    read.scheduler = true;
  }
  if (std::filesystem::exists(dir / "tokenizer" / "vocab.json") || std::filesystem::exists(dir / "tokenizer" / "tokenizer.json"))
    model.tokenizer_dir = dir / "tokenizer";
  return read;
}

ModelFamily family_from_text_encoder(const TextEncoderConfig& config) {
  return config.hidden_act == "gelu" ? ModelFamily::sd2 : ModelFamily::sd1;
}

WeightMap canonical_text_encoder_names(WeightMap weights) {
  static const std::string prefix = "text_model.";
  WeightMap out;
  for (auto& [name, t] : weights) {
    std::string key = name.starts_with(prefix) ? name : prefix + name;
    if (key == "text_model.embeddings.position_ids") continue;  // an index buffer, not a weight
    if (!key.starts_with("text_model.embeddings.") && !key.starts_with("text_model.encoder.") &&
        !key.starts_with("text_model.final_layer_norm."))
      continue;  // e.g. text_projection of CLIPTextModelWithProjection: SD does not use it
    out.emplace(std::move(key), std::move(t));
  }
  return out;
}

namespace {

// Checks one tensor's shape; -1 in `expected` matches any size.
void expect_shape(const WeightMap& weights, const std::string& component, const std::string& name,
                  const Shape& expected, const std::string& origin) {
  const auto it = weights.find(name);
  if (it == weights.end())
    throw Error(ErrorCode::invalid_argument,
                component + " weight '" + name + "' is missing: " + origin + " does not describe these weights");
  const auto& shape = it->second.shape();
  bool ok = shape.size() == expected.size();
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = expected[i] < 0 || expected[i] == shape[i];
  if (!ok)
    throw Error(ErrorCode::invalid_argument, component + " weight '" + name + "' has shape " + shape_to_string(shape) +
                                                 " but " + origin + " implies " + shape_to_string(expected));
}

}  // namespace

void check_weights_match_configs(const LoadedModel& m, const std::string& origin) {
  const auto& u = m.unet;
  const std::int64_t c0 = u.block_out_channels.at(0);
  expect_shape(m.unet_weights, "U-Net", "conv_in.weight", {c0, u.in_channels, -1, -1}, origin);
  expect_shape(m.unet_weights, "U-Net", "conv_out.weight", {u.out_channels, c0, -1, -1}, origin);
  expect_shape(m.unet_weights, "U-Net", "time_embedding.linear_1.weight", {u.time_embed_dim(), c0}, origin);
  for (std::size_t level = 0; level < u.block_out_channels.size(); ++level) {
    const auto base = "down_blocks." + std::to_string(level) + ".";
    const std::int64_t ch = u.block_out_channels[level];
    for (int r = 0; r < u.layers_per_block; ++r)
      expect_shape(m.unet_weights, "U-Net", base + "resnets." + std::to_string(r) + ".conv1.weight", {ch, -1, 3, 3}, origin);
    const auto attn = base + "attentions.0.";
    const bool has_attention = m.unet_weights.count(attn + "proj_in.weight") > 0;
    if (has_attention != u.level_has_attention(level))
      throw Error(ErrorCode::invalid_argument, "U-Net level " + std::to_string(level) + (has_attention ? " has" : " has no") +
                                                   " attention layers but " + origin + " says " + u.down_block_types[level]);
    if (has_attention) {
      const Shape proj = u.use_linear_projection ? Shape{ch, ch} : Shape{ch, ch, 1, 1};
      expect_shape(m.unet_weights, "U-Net", attn + "proj_in.weight", proj, origin);
      expect_shape(m.unet_weights, "U-Net", attn + "transformer_blocks.0.attn2.to_k.weight", {ch, u.cross_attention_dim}, origin);
    }
  }

  const auto& t = m.text_encoder;
  expect_shape(m.text_encoder_weights, "text encoder", "text_model.embeddings.token_embedding.weight",
               {t.vocab_size, t.hidden_size}, origin);
  expect_shape(m.text_encoder_weights, "text encoder", "text_model.embeddings.position_embedding.weight",
               {t.max_position_embeddings, t.hidden_size}, origin);
  for (int layer = 0; layer < t.num_hidden_layers; ++layer)
    expect_shape(m.text_encoder_weights, "text encoder", "text_model.encoder.layers." + std::to_string(layer) + ".mlp.fc1.weight",
                 {t.intermediate_size, t.hidden_size}, origin);

  const auto& v = m.vae;
  expect_shape(m.vae_weights, "VAE", "decoder.conv_in.weight", {v.block_out_channels.back(), v.latent_channels, 3, 3}, origin);
  for (std::size_t level = 0; level < v.block_out_channels.size(); ++level)
    expect_shape(m.vae_weights, "VAE", "encoder.down_blocks." + std::to_string(level) + ".resnets.0.conv2.weight",
                 {v.block_out_channels[level], v.block_out_channels[level], 3, 3}, origin);
}

}  // namespace detail
}  // namespace fisedit
