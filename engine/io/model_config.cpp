// Reading and checking the components' config.json files (model_config.h).
#include "io/model_config.h"

#include "core/error.h"

namespace fisedit {
namespace {

// Reads `key` as T when present and not null; a value of the wrong type is a corrupt config.
template <class T>
void read(const nlohmann::json& j, const char* key, T& out, const std::filesystem::path& source) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(ErrorCode::corrupt_file, source.string() + ": \"" + key + "\" has the wrong type (" +
                                             std::string(it->type_name()) + ")");
  }
}

void require_object(const nlohmann::json& j, const std::filesystem::path& source) {
  if (!j.is_object()) throw Error(ErrorCode::corrupt_file, source.string() + ": config is not a JSON object");
}

// An int applies to every level; a list gives one value per level.
std::vector<int> per_level(const nlohmann::json& v, std::size_t levels, const char* key,
                           const std::filesystem::path& source) {
  if (v.is_number_integer()) return std::vector<int>(levels, v.get<int>());
  if (v.is_array() && v.size() == levels) {
    std::vector<int> out;
    for (const auto& x : v) {
      if (!x.is_number_integer()) break;
      out.push_back(x.get<int>());
    }
    if (out.size() == levels) return out;
  }
  throw Error(ErrorCode::corrupt_file, source.string() + ": \"" + key + "\" must be an integer or a list of " +
                                           std::to_string(levels) + " integers");
}

void check_positive(int v, const char* key, const std::filesystem::path& source) {
  if (v <= 0) throw Error(ErrorCode::corrupt_file, source.string() + ": \"" + key + "\" must be positive");
}

}  // namespace

const char* family_name(ModelFamily f) { return f == ModelFamily::sd1 ? "SD1.x" : "SD2.x"; }
const char* prediction_name(PredictionType p) { return p == PredictionType::epsilon ? "epsilon" : "v_prediction"; }

bool UNetConfig::level_has_attention(std::size_t level) const {
  return down_block_types.at(level).find("CrossAttn") != std::string::npos;
}

UNetConfig UNetConfig::from_json(const nlohmann::json& j, const std::filesystem::path& source) {
  require_object(j, source);
  UNetConfig c;
  read(j, "in_channels", c.in_channels, source);
  read(j, "out_channels", c.out_channels, source);
  read(j, "block_out_channels", c.block_out_channels, source);
  read(j, "layers_per_block", c.layers_per_block, source);
  read(j, "down_block_types", c.down_block_types, source);
  read(j, "up_block_types", c.up_block_types, source);
  read(j, "mid_block_type", c.mid_block_type, source);
  read(j, "cross_attention_dim", c.cross_attention_dim, source);
  read(j, "use_linear_projection", c.use_linear_projection, source);
  read(j, "upcast_attention", c.upcast_attention, source);
  read(j, "norm_num_groups", c.norm_num_groups, source);
  read(j, "norm_eps", c.norm_eps, source);
  read(j, "flip_sin_to_cos", c.flip_sin_to_cos, source);
  read(j, "freq_shift", c.freq_shift, source);
  read(j, "sample_size", c.sample_size, source);
  if (j.contains("transformer_layers_per_block") && !j["transformer_layers_per_block"].is_number_integer())
    throw Error(ErrorCode::unsupported, source.string() + ": per-level transformer_layers_per_block (SDXL-style) is not supported");
  read(j, "transformer_layers_per_block", c.transformer_layers_per_block, source);

  const auto levels = c.block_out_channels.size();
  if (levels == 0 || c.down_block_types.size() != levels || c.up_block_types.size() != levels)
    throw Error(ErrorCode::corrupt_file, source.string() +
                                             ": block_out_channels, down_block_types and up_block_types must be non-empty lists of equal length");
  for (int ch : c.block_out_channels) check_positive(ch, "block_out_channels", source);
  check_positive(c.layers_per_block, "layers_per_block", source);
  check_positive(c.norm_num_groups, "norm_num_groups", source);
  // diffusers: num_attention_heads = num_attention_heads or attention_head_dim (the historic misnomer).
  const auto heads_it = j.find("num_attention_heads");
  const auto dim_it = j.find("attention_head_dim");
  if (heads_it != j.end() && !heads_it->is_null())
    c.num_attention_heads = per_level(*heads_it, levels, "num_attention_heads", source);
  else if (dim_it != j.end() && !dim_it->is_null())
    c.num_attention_heads = per_level(*dim_it, levels, "attention_head_dim", source);
  else
    c.num_attention_heads.assign(levels, 8);
  for (std::size_t i = 0; i < levels; ++i) {
    check_positive(c.num_attention_heads[i], "attention_head_dim", source);
    if (c.block_out_channels[i] % c.num_attention_heads[i] != 0)
      throw Error(ErrorCode::corrupt_file, source.string() + ": level " + std::to_string(i) + " has " +
                                               std::to_string(c.block_out_channels[i]) + " channels, not divisible by " +
                                               std::to_string(c.num_attention_heads[i]) + " heads");
  }
  return c;
}

VaeConfig VaeConfig::from_json(const nlohmann::json& j, const std::filesystem::path& source) {
  require_object(j, source);
  VaeConfig c;
  read(j, "in_channels", c.in_channels, source);
  read(j, "out_channels", c.out_channels, source);
  read(j, "latent_channels", c.latent_channels, source);
  read(j, "block_out_channels", c.block_out_channels, source);
  read(j, "layers_per_block", c.layers_per_block, source);
  read(j, "norm_num_groups", c.norm_num_groups, source);
  read(j, "scaling_factor", c.scaling_factor, source);
  read(j, "use_quant_conv", c.use_quant_conv, source);
  read(j, "use_post_quant_conv", c.use_post_quant_conv, source);
  read(j, "mid_block_add_attention", c.mid_block_add_attention, source);
  read(j, "sample_size", c.sample_size, source);
  if (c.block_out_channels.empty())
    throw Error(ErrorCode::corrupt_file, source.string() + ": block_out_channels must be a non-empty list");
  for (int ch : c.block_out_channels) check_positive(ch, "block_out_channels", source);
  check_positive(c.latent_channels, "latent_channels", source);
  return c;
}

TextEncoderConfig TextEncoderConfig::from_json(const nlohmann::json& j, const std::filesystem::path& source) {
  require_object(j, source);
  TextEncoderConfig c;
  read(j, "vocab_size", c.vocab_size, source);
  read(j, "hidden_size", c.hidden_size, source);
  read(j, "intermediate_size", c.intermediate_size, source);
  read(j, "num_hidden_layers", c.num_hidden_layers, source);
  read(j, "num_attention_heads", c.num_attention_heads, source);
  read(j, "max_position_embeddings", c.max_position_embeddings, source);
  read(j, "hidden_act", c.hidden_act, source);
  read(j, "layer_norm_eps", c.layer_norm_eps, source);
  check_positive(c.hidden_size, "hidden_size", source);
  check_positive(c.num_hidden_layers, "num_hidden_layers", source);
  check_positive(c.num_attention_heads, "num_attention_heads", source);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw Error(ErrorCode::corrupt_file, source.string() + ": hidden_size is not divisible by num_attention_heads");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    throw Error(ErrorCode::unsupported, source.string() + ": text encoder activation \"" + c.hidden_act +
                                            "\" is not supported (quick_gelu or gelu)");
  return c;
}

SchedulerConfig SchedulerConfig::from_json(const nlohmann::json& j, const std::filesystem::path& source) {
  require_object(j, source);
  SchedulerConfig c;
  read(j, "_class_name", c.class_name, source);
  read(j, "num_train_timesteps", c.num_train_timesteps, source);
  read(j, "beta_start", c.beta_start, source);
  read(j, "beta_end", c.beta_end, source);
  read(j, "beta_schedule", c.beta_schedule, source);
  read(j, "timestep_spacing", c.timestep_spacing, source);
  read(j, "steps_offset", c.steps_offset, source);
  read(j, "set_alpha_to_one", c.set_alpha_to_one, source);
  std::string prediction = "epsilon";
  read(j, "prediction_type", prediction, source);
  if (prediction == "epsilon")
    c.prediction_type = PredictionType::epsilon;
  else if (prediction == "v_prediction")
    c.prediction_type = PredictionType::v_prediction;
  else
    throw Error(ErrorCode::unsupported, source.string() + ": prediction_type \"" + prediction +
                                            "\" is not supported (epsilon or v_prediction)");
  check_positive(c.num_train_timesteps, "num_train_timesteps", source);
  c.raw = j;
  return c;
}

}  // namespace fisedit
