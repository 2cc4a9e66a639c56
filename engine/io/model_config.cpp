// Reading and checking the components' config.json files (model_config.h).
#include "io/model_config.h"

#include "core/error.h"
#include "io/json_file.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace fisedit {
namespace {

[[noreturn]] void bad_field(const std::filesystem::path& source, const std::string& key, const std::string& what) {
  throw Error(ErrorCode::corrupt_file, source.string() + ": \"" + key + "\" " + what);
}

// The JSON value's text for a message, cut short.
std::string shown(const nlohmann::json& v) {
  auto text = v.dump();
  return text.size() > 40 ? text.substr(0, 40) + "..." : text;
}

// Strict conversions: an integer field takes a JSON integer that fits (never a float, a boolean or a
// value that would wrap), a float field a finite number, a flag a boolean, a name a string.
int to_int(const nlohmann::json& v, const std::string& key, const std::filesystem::path& source) {
  int out = 0;
  switch (json_to_int(v, out)) {
    case JsonFit::ok: return out;
    case JsonFit::out_of_range: bad_field(source, key, "is " + shown(v) + (v.is_number_unsigned() ? ", too large" : ", out of range"));
    case JsonFit::wrong_type: break;
  }
  bad_field(source, key, "must be an integer, not " + shown(v));
}

void convert(const nlohmann::json& v, int& out, const std::string& key, const std::filesystem::path& source) {
  out = to_int(v, key, source);
}
void convert(const nlohmann::json& v, float& out, const std::string& key, const std::filesystem::path& source) {
  switch (json_to_float(v, out)) {
    case JsonFit::ok: return;
    case JsonFit::out_of_range: bad_field(source, key, "must be a finite number, not " + shown(v));
    case JsonFit::wrong_type: break;
  }
  bad_field(source, key, "must be a number, not " + shown(v));
}
void convert(const nlohmann::json& v, bool& out, const std::string& key, const std::filesystem::path& source) {
  if (!v.is_boolean()) bad_field(source, key, "must be true or false, not " + shown(v));
  out = v.get<bool>();
}
void convert(const nlohmann::json& v, std::string& out, const std::string& key, const std::filesystem::path& source) {
  if (!v.is_string()) bad_field(source, key, "must be a string, not " + shown(v));
  out = v.get<std::string>();
}
template <class T>
void convert(const nlohmann::json& v, std::vector<T>& out, const std::string& key, const std::filesystem::path& source,
             std::size_t max_size = 64) {
  if (!v.is_array()) bad_field(source, key, "must be a list, not " + shown(v));
  if (v.size() > max_size) bad_field(source, key, "has " + std::to_string(v.size()) + " entries, more than " + std::to_string(max_size));
  out.clear();
  for (std::size_t i = 0; i < v.size(); ++i) {
    T x{};
    convert(v[i], x, key + "[" + std::to_string(i) + "]", source);
    out.push_back(std::move(x));
  }
}

// Reads `key` when present and not null; a value of the wrong type is a corrupt config.
template <class T>
void read(const nlohmann::json& j, const char* key, T& out, const std::filesystem::path& source) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  convert(*it, out, key, source);
}

// Integers in [lo, hi]: sizes beyond any SD model would only allocate without end.
void check_range(int v, int lo, int hi, const char* key, const std::filesystem::path& source) {
  if (v < lo || v > hi)
    bad_field(source, key, "is " + std::to_string(v) + ", outside " + std::to_string(lo) + ".." + std::to_string(hi));
}

// Group normalisation splits each level's channels into norm_num_groups equal groups.
void check_groups(const std::vector<int>& channels, int groups, const std::filesystem::path& source) {
  for (const int ch : channels)
    if (ch % groups != 0)
      bad_field(source, "norm_num_groups", "is " + std::to_string(groups) + ", which does not divide " + std::to_string(ch) +
                                               " (block_out_channels)");
}

void check_positive_float(float v, const char* key, const std::filesystem::path& source) {
  if (!(v > 0.0f)) bad_field(source, key, "must be greater than 0 (is " + std::to_string(v) + ")");
}

constexpr int kMaxChannels = 1 << 16;

// The samplers' own options in scheduler_config.json (read by engine/sched through SamplerOptions), by
// type: a value of another type is refused here, naming the file, instead of being read as the
// option's default ("clip_sample": "yes" ran without clipping). null stands for the default, as
// diffusers writes it (sigma_min, variance_type).
enum class OptionType { boolean, integer, number, string };
void check_sampler_option_types(const nlohmann::json& j, const std::filesystem::path& source) {
  static constexpr std::pair<const char*, OptionType> kOptions[] = {
      {"clip_sample", OptionType::boolean},         {"thresholding", OptionType::boolean},
      {"lower_order_final", OptionType::boolean},   {"euler_at_final", OptionType::boolean},
      {"use_karras_sigmas", OptionType::boolean},   {"use_exponential_sigmas", OptionType::boolean},
      {"use_beta_sigmas", OptionType::boolean},     {"use_lu_lambdas", OptionType::boolean},
      {"rescale_betas_zero_snr", OptionType::boolean}, {"skip_prk_steps", OptionType::boolean},
      {"solver_order", OptionType::integer},        {"clip_sample_range", OptionType::number},
      {"dynamic_thresholding_ratio", OptionType::number}, {"sample_max_value", OptionType::number},
      {"sigma_min", OptionType::number},            {"sigma_max", OptionType::number},
      {"algorithm_type", OptionType::string},       {"solver_type", OptionType::string},
      {"final_sigmas_type", OptionType::string},    {"interpolation_type", OptionType::string},
      {"timestep_type", OptionType::string},        {"variance_type", OptionType::string},
  };
  for (const auto& [key, type] : kOptions) {
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    switch (type) {
      case OptionType::boolean: { bool b; convert(*it, b, key, source); break; }
      case OptionType::integer: (void)to_int(*it, key, source); break;
      case OptionType::number: { float f; convert(*it, f, key, source); break; }
      case OptionType::string: { std::string t; convert(*it, t, key, source); break; }
    }
  }
}

void require_object(const nlohmann::json& j, const std::filesystem::path& source) {
  if (!j.is_object()) throw Error(ErrorCode::corrupt_file, source.string() + ": config is not a JSON object");
}

// An int applies to every level; a list gives one value per level.
std::vector<int> per_level(const nlohmann::json& v, std::size_t levels, const char* key,
                           const std::filesystem::path& source) {
  if (v.is_number_integer()) return std::vector<int>(levels, to_int(v, key, source));
  if (v.is_array() && v.size() == levels) {
    std::vector<int> out;
    for (const auto& x : v) {
      if (!x.is_number_integer()) break;
      out.push_back(to_int(x, key, source));
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

const std::vector<std::string>& known_scheduler_classes() {
  // diffusers' schedulers for SD 1.x/2.x noise schedules; the pipeline runs its own sampler for them.
  static const std::vector<std::string> names = {
      "DDIMScheduler", "PNDMScheduler", "DDPMScheduler", "LMSDiscreteScheduler", "EulerDiscreteScheduler",
      "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler",
      "DPMSolverSDEScheduler", "UniPCMultistepScheduler", "HeunDiscreteScheduler", "KDPM2DiscreteScheduler",
      "KDPM2AncestralDiscreteScheduler", "DEISMultistepScheduler"};
  return names;
}

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
  for (int ch : c.block_out_channels) check_range(ch, 1, kMaxChannels, "block_out_channels", source);
  check_range(c.layers_per_block, 1, 64, "layers_per_block", source);
  check_range(c.norm_num_groups, 1, kMaxChannels, "norm_num_groups", source);
  check_range(c.in_channels, 1, kMaxChannels, "in_channels", source);
  check_range(c.out_channels, 1, kMaxChannels, "out_channels", source);
  check_range(c.cross_attention_dim, 1, kMaxChannels, "cross_attention_dim", source);
  check_range(c.transformer_layers_per_block, 1, 64, "transformer_layers_per_block", source);
  check_range(c.sample_size, 1, 1024, "sample_size", source);  // latent pixels: up to kMaxImageSide / 8
  check_groups(c.block_out_channels, c.norm_num_groups, source);
  check_positive_float(c.norm_eps, "norm_eps", source);
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
  for (int ch : c.block_out_channels) check_range(ch, 1, kMaxChannels, "block_out_channels", source);
  check_range(c.latent_channels, 1, kMaxChannels, "latent_channels", source);
  check_range(c.in_channels, 1, kMaxChannels, "in_channels", source);
  check_range(c.out_channels, 1, kMaxChannels, "out_channels", source);
  check_range(c.layers_per_block, 1, 64, "layers_per_block", source);
  check_range(c.norm_num_groups, 1, kMaxChannels, "norm_num_groups", source);
  check_range(c.sample_size, 1, 1 << 16, "sample_size", source);
  check_groups(c.block_out_channels, c.norm_num_groups, source);
  check_positive_float(c.scaling_factor, "scaling_factor", source);
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
  check_range(c.vocab_size, 1, 1'000'000, "vocab_size", source);
  check_range(c.hidden_size, 1, kMaxChannels, "hidden_size", source);
  check_range(c.intermediate_size, 1, 4 * kMaxChannels, "intermediate_size", source);
  check_range(c.num_hidden_layers, 1, 256, "num_hidden_layers", source);
  check_range(c.num_attention_heads, 1, kMaxChannels, "num_attention_heads", source);
  check_range(c.max_position_embeddings, 1, 1 << 16, "max_position_embeddings", source);
  check_positive_float(c.layer_norm_eps, "layer_norm_eps", source);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw Error(ErrorCode::corrupt_file, source.string() + ": hidden_size is not divisible by num_attention_heads");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    throw Error(ErrorCode::unsupported, source.string() + ": text encoder activation \"" + c.hidden_act +
                                            "\" is not supported (quick_gelu or gelu)");
  c.source = source;
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
  check_range(c.num_train_timesteps, 1, kMaxTrainTimesteps, "num_train_timesteps", source);
  check_range(c.steps_offset, 0, c.num_train_timesteps - 1, "steps_offset", source);
  if (!(c.beta_start > 0.0f && c.beta_start < c.beta_end && c.beta_end < 1.0f))
    throw Error(ErrorCode::corrupt_file, source.string() + ": beta_start " + std::to_string(c.beta_start) + " and beta_end " +
                                             std::to_string(c.beta_end) + " must satisfy 0 < beta_start < beta_end < 1");
  if (c.beta_schedule != "linear" && c.beta_schedule != "scaled_linear")
    throw Error(ErrorCode::unsupported, source.string() + ": beta_schedule \"" + c.beta_schedule +
                                            "\" is not supported (linear or scaled_linear)");
  if (c.timestep_spacing != "leading" && c.timestep_spacing != "trailing" && c.timestep_spacing != "linspace")
    throw Error(ErrorCode::unsupported, source.string() + ": timestep_spacing \"" + c.timestep_spacing +
                                            "\" is not supported (leading, trailing or linspace)");
  if (const auto trained = j.find("trained_betas"); trained != j.end() && !trained->is_null()) {
    std::vector<float> betas;
    convert(*trained, betas, "trained_betas", source, kMaxTrainTimesteps);
    if (betas.size() != static_cast<std::size_t>(c.num_train_timesteps))
      bad_field(source, "trained_betas", "has " + std::to_string(betas.size()) + " values, not num_train_timesteps (" +
                                             std::to_string(c.num_train_timesteps) + ")");
    for (const float b : betas)
      if (!(b > 0.0f && b < 1.0f)) bad_field(source, "trained_betas", "holds " + std::to_string(b) + ", outside (0, 1)");
  }
  check_sampler_option_types(j, source);
  const auto& known = known_scheduler_classes();
  if (std::find(known.begin(), known.end(), c.class_name) == known.end())
    throw Error(ErrorCode::unsupported, source.string() + ": \"_class_name\" \"" + c.class_name +
                                            "\" is not a diffusers scheduler fisedit knows (e.g. DDIMScheduler, PNDMScheduler, "
                                            "DPMSolverMultistepScheduler, EulerDiscreteScheduler)");
  c.raw = j;
  c.source = source;
  return c;
}

}  // namespace fisedit
