#pragma once
// Configurations of the Stable Diffusion components, as diffusers/transformers write them in
// config.json files. Field names follow diffusers so the mapping stays obvious.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace fisedit {

enum class ModelFamily { sd1, sd2 };
enum class PredictionType { epsilon, v_prediction };

const char* family_name(ModelFamily f);          // "SD1.x" / "SD2.x"
const char* prediction_name(PredictionType p);   // "epsilon" / "v_prediction"

struct UNetConfig {
  int in_channels = 4;
  int out_channels = 4;
  std::vector<int> block_out_channels;
  int layers_per_block = 2;
  std::vector<std::string> down_block_types;
  std::vector<std::string> up_block_types;
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";
  // Heads per down level. diffusers' SD configs store the head *count* under the misnamed
  // `attention_head_dim` (its UNet2DConditionModel reads it as num_attention_heads); we resolve it here.
  std::vector<int> num_attention_heads;
  int cross_attention_dim = 768;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  bool flip_sin_to_cos = true;
  int freq_shift = 0;
  int sample_size = 64;
  int transformer_layers_per_block = 1;

  int time_embed_dim() const { return 4 * block_out_channels.at(0); }
  bool level_has_attention(std::size_t level) const;  // down level `level` is a CrossAttn block
  static UNetConfig from_json(const nlohmann::json& j, const std::filesystem::path& source);
};

struct VaeConfig {
  int in_channels = 3;
  int out_channels = 3;
  int latent_channels = 4;
  std::vector<int> block_out_channels;
  int layers_per_block = 2;
  int norm_num_groups = 32;
  float scaling_factor = 0.18215f;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;
  int sample_size = 512;
  static VaeConfig from_json(const nlohmann::json& j, const std::filesystem::path& source);
};

struct TextEncoderConfig {
  int vocab_size = 49408;
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";
  float layer_norm_eps = 1e-5f;
  std::filesystem::path source;  // its config.json, or the checkpoint it was inferred from (messages)
  static TextEncoderConfig from_json(const nlohmann::json& j, const std::filesystem::path& source);
};

// The diffusers scheduler class names a scheduler_config.json may give ("_class_name"); others are refused.
const std::vector<std::string>& known_scheduler_classes();

// num_train_timesteps above this is refused (SD models use 1000).
inline constexpr int kMaxTrainTimesteps = 10000;

struct SchedulerConfig {
  std::string class_name = "PNDMScheduler";
  int num_train_timesteps = 1000;
  float beta_start = 0.00085f;
  float beta_end = 0.012f;
  std::string beta_schedule = "scaled_linear";
  PredictionType prediction_type = PredictionType::epsilon;
  std::string timestep_spacing = "leading";
  int steps_offset = 1;
  bool set_alpha_to_one = false;
  nlohmann::json raw;  // everything the file said, for scheduler-specific options
  std::filesystem::path source;  // the file it was read from, for messages
  static SchedulerConfig from_json(const nlohmann::json& j, const std::filesystem::path& source);
};

}  // namespace fisedit
