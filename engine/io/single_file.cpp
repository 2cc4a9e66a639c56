// Single-file (CompVis/LDM) checkpoints: map every key to its diffusers name, and work out the
// configuration from the tensors (or take it from a user-given config folder).
#include "core/error.h"
#include "io/model_loader_internal.h"
#include "io/safetensors.h"
#include "io/single_file_keys.h"

#include <algorithm>
#include <set>

namespace fisedit::detail {
namespace {

const std::string kUNetPrefix = "model.diffusion_model.";
const std::string kVaePrefix = "first_stage_model.";
const std::string kClipPrefix = "cond_stage_model.transformer.";  // SD1.x: HF CLIPTextModel
const std::string kOpenClipPrefix = "cond_stage_model.model.";    // SD2.x: OpenCLIP

struct SplitCheckpoint {
  WeightMap unet, vae, text;  // LDM names without their prefix
  bool open_clip = false;
};

SplitCheckpoint split_by_component(const SafetensorsFile& file) {
  SplitCheckpoint out;
  bool saw_clip = false;
  for (const auto& info : file.tensors()) {
    const auto& name = info.name;
    if (name.starts_with(kUNetPrefix)) {
      out.unet.emplace(name.substr(kUNetPrefix.size()), file.tensor(info));
    } else if (name.starts_with(kVaePrefix)) {
      out.vae.emplace(name.substr(kVaePrefix.size()), file.tensor(info));
    } else if (name.starts_with(kOpenClipPrefix)) {
      out.open_clip = true;
      out.text.emplace(name.substr(kOpenClipPrefix.size()), file.tensor(info));
    } else if (name.starts_with(kClipPrefix)) {
      saw_clip = true;
      out.text.emplace(name.substr(kClipPrefix.size()), file.tensor(info));
    } else if (name.starts_with("conditioner.embedders.")) {
      throw Error(ErrorCode::unsupported, file.path().string() + ": an SDXL checkpoint (conditioner.embedders.*); fisedit runs Stable Diffusion 1.x and 2.x");
    }
    // Everything else is a training buffer (alphas_cumprod, betas, model_ema.*, ...), not a weight.
  }
  if (out.unet.empty())
    throw Error(ErrorCode::corrupt_file, file.path().string() + ": no U-Net weights (model.diffusion_model.*): not a Stable Diffusion checkpoint");
  if (out.vae.empty())
    throw Error(ErrorCode::not_found, file.path().string() + ": no VAE weights (first_stage_model.*); fisedit needs a full checkpoint");
  if (out.text.empty())
    throw Error(ErrorCode::not_found, file.path().string() + ": no text encoder weights (cond_stage_model.*); fisedit needs a full checkpoint");
  if (out.open_clip && saw_clip)
    throw Error(ErrorCode::corrupt_file, file.path().string() + ": holds both CLIP and OpenCLIP text encoders");
  return out;
}

const Tensor& weight(const WeightMap& w, const std::string& name, const std::filesystem::path& file) {
  const auto it = w.find(name);
  if (it == w.end()) throw Error(ErrorCode::corrupt_file, file.string() + ": missing weight '" + name + "'");
  return it->second;
}

// Size `i` of a weight of rank `rank`, a size a config can hold: the configuration is read from these.
int weight_dim(const WeightMap& w, const std::string& name, int rank, int i, const std::filesystem::path& file) {
  const auto& t = weight(w, name, file);
  if (t.rank() != rank)
    throw Error(ErrorCode::corrupt_file, file.string() + ": weight '" + name + "' has shape " + shape_to_string(t.shape()) +
                                             ", expected " + std::to_string(rank) + " dimensions");
  const auto d = t.dim(i);
  if (d < 1 || d > 1'000'000)
    throw Error(ErrorCode::corrupt_file, file.string() + ": weight '" + name + "' has shape " + shape_to_string(t.shape()) +
                                             ", with a size outside 1..1000000");
  return static_cast<int>(d);
}

// Number of indices `i` for which `prefix + i + "."` starts some key.
int count_indexed(const WeightMap& w, const std::string& prefix) {
  int n = 0;
  while (true) {
    const auto p = prefix + std::to_string(n) + ".";
    const auto it = w.lower_bound(p);
    if (it == w.end() || !it->first.starts_with(p)) return n;
    ++n;
  }
}

// The configuration real SD1.x / SD2.x checkpoints have, with sizes read from the (mapped) tensors.
void infer_unet_config(LoadedModel& m, const std::filesystem::path& file) {
  const auto& w = m.unet_weights;
  UNetConfig c;
  const int levels = count_indexed(w, "down_blocks.");
  if (levels == 0) throw Error(ErrorCode::corrupt_file, file.string() + ": U-Net has no down blocks");
  c.in_channels = weight_dim(w, "conv_in.weight", 4, 1, file);
  c.out_channels = weight_dim(w, "conv_out.weight", 4, 0, file);
  c.layers_per_block = count_indexed(w, "down_blocks.0.resnets.");
  for (int level = 0; level < levels; ++level) {
    const auto base = "down_blocks." + std::to_string(level) + ".";
    c.block_out_channels.push_back(weight_dim(w, base + "resnets.0.conv1.weight", 4, 0, file));
    const bool attention = w.count(base + "attentions.0.proj_in.weight") > 0;
    c.down_block_types.push_back(attention ? "CrossAttnDownBlock2D" : "DownBlock2D");
  }
  for (int level = levels - 1; level >= 0; --level)
    c.up_block_types.push_back(c.down_block_types[level] == "DownBlock2D" ? "UpBlock2D" : "CrossAttnUpBlock2D");
  const auto attn = std::find(c.down_block_types.begin(), c.down_block_types.end(), "CrossAttnDownBlock2D");
  if (attn != c.down_block_types.end()) {
    const auto base = "down_blocks." + std::to_string(attn - c.down_block_types.begin()) + ".attentions.0.";
    c.use_linear_projection = weight(w, base + "proj_in.weight", file).rank() == 2;
    c.cross_attention_dim = weight_dim(w, base + "transformer_blocks.0.attn2.to_k.weight", 2, 1, file);
  }
  // Head counts are invisible in tensor shapes: SD1.x uses 8 heads everywhere, SD2.x 64-wide heads.
  for (int ch : c.block_out_channels)
    c.num_attention_heads.push_back(m.family == ModelFamily::sd1 ? 8 : std::max(1, ch / 64));
  for (std::size_t level = 0; level < c.block_out_channels.size(); ++level)
    if (c.block_out_channels[level] % c.num_attention_heads[level] != 0)
      throw Error(ErrorCode::corrupt_file, file.string() + ": U-Net level " + std::to_string(level) + " has " +
                                               std::to_string(c.block_out_channels[level]) + " channels, not divisible into " +
                                               std::to_string(c.num_attention_heads[level]) + " heads (" + family_name(m.family) +
                                               " rule); give its config folder");
  c.upcast_attention = m.family == ModelFamily::sd2;
  c.sample_size = m.family == ModelFamily::sd1 ? 64 : 96;
  m.unet = c;
  m.assumptions.push_back(m.family == ModelFamily::sd1 ? "U-Net heads: 8 per attention (SD1.x rule)"
                                                       : "U-Net heads: 64-wide (SD2.x rule); attention upcast to float32");
  m.assumptions.push_back("default size " + std::to_string(c.sample_size * 8) + "x" + std::to_string(c.sample_size * 8) +
                          " (" + family_name(m.family) + " rule)");
}

void infer_vae_config(LoadedModel& m, const std::filesystem::path& file) {
  const auto& w = m.vae_weights;
  VaeConfig c;
  const int levels = count_indexed(w, "encoder.down_blocks.");
  for (int level = 0; level < levels; ++level)
    c.block_out_channels.push_back(weight_dim(w, "encoder.down_blocks." + std::to_string(level) + ".resnets.0.conv2.weight", 4, 0, file));
  if (c.block_out_channels.empty()) throw Error(ErrorCode::corrupt_file, file.string() + ": VAE encoder has no down blocks");
  c.layers_per_block = count_indexed(w, "encoder.down_blocks.0.resnets.");
  c.latent_channels = weight_dim(w, "decoder.conv_in.weight", 4, 1, file);
  c.in_channels = weight_dim(w, "encoder.conv_in.weight", 4, 1, file);
  c.out_channels = weight_dim(w, "decoder.conv_out.weight", 4, 0, file);
  c.use_quant_conv = w.count("quant_conv.weight") > 0;
  c.use_post_quant_conv = w.count("post_quant_conv.weight") > 0;
  c.mid_block_add_attention = w.count("decoder.mid_block.attentions.0.to_q.weight") > 0;
  c.sample_size = m.unet.sample_size * 8;
  m.vae = c;
}

void infer_text_encoder_config(LoadedModel& m, int available_layers, const std::filesystem::path& file) {
  const auto& w = m.text_encoder_weights;
  TextEncoderConfig c;
  c.source = file;
  c.vocab_size = weight_dim(w, "text_model.embeddings.token_embedding.weight", 2, 0, file);
  c.hidden_size = weight_dim(w, "text_model.embeddings.token_embedding.weight", 2, 1, file);
  c.max_position_embeddings = weight_dim(w, "text_model.embeddings.position_embedding.weight", 2, 0, file);
  c.intermediate_size = weight_dim(w, "text_model.encoder.layers.0.mlp.fc1.weight", 2, 0, file);
  c.num_attention_heads = std::max(1, c.hidden_size / 64);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw Error(ErrorCode::corrupt_file, file.string() + ": text encoder width " + std::to_string(c.hidden_size) +
                                             " is not divisible into 64-wide heads; give its config folder");
  if (m.family == ModelFamily::sd1) {
    c.num_hidden_layers = available_layers;
    c.hidden_act = "quick_gelu";
  } else {
    c.num_hidden_layers = available_layers - 1;  // SD2.x conditions on the penultimate OpenCLIP layer
    c.hidden_act = "gelu";
    m.assumptions.push_back("text encoder: the first " + std::to_string(c.num_hidden_layers) + " of " +
                            std::to_string(available_layers) + " OpenCLIP layers (SD2.x rule)");
  }
  m.text_encoder = c;
  m.assumptions.push_back("text encoder heads: " + std::to_string(c.num_attention_heads) + " (64-wide rule)");
}

void default_scheduler_config(LoadedModel& m) {
  SchedulerConfig s;  // the betas every SD1.x/2.x checkpoint was trained with
  if (m.family == ModelFamily::sd1) {
    s.class_name = "PNDMScheduler";
    s.prediction_type = PredictionType::epsilon;
  } else {
    s.class_name = "DDIMScheduler";
    s.prediction_type = PredictionType::v_prediction;
  }
  s.raw = {{"_class_name", s.class_name}, {"beta_start", s.beta_start}, {"beta_end", s.beta_end},
           {"beta_schedule", s.beta_schedule}, {"num_train_timesteps", s.num_train_timesteps},
           {"prediction_type", prediction_name(s.prediction_type)}, {"steps_offset", s.steps_offset},
           {"timestep_spacing", s.timestep_spacing}, {"set_alpha_to_one", s.set_alpha_to_one}};
  m.scheduler = s;
  m.assumptions.push_back(std::string("prediction type: ") + prediction_name(s.prediction_type) + " (" +
                          family_name(m.family) +
                          (m.family == ModelFamily::sd2 ? " rule for the 768-v models; a 512-base model predicts epsilon: give its config folder)"
                                                        : " rule)"));
}

}  // namespace

LoadedModel load_single_file(const std::filesystem::path& path, const LoadOptions& options) {
  const auto file = SafetensorsFile::open(path);
  auto parts = split_by_component(file);

  LoadedModel m;
  m.source = path;
  m.format = ModelFormat::single_file;
  m.family = parts.open_clip ? ModelFamily::sd2 : ModelFamily::sd1;
  const int text_layers = parts.open_clip ? count_indexed(parts.text, "transformer.resblocks.")
                                          : count_indexed(parts.text, "text_model.encoder.layers.") +
                                                count_indexed(parts.text, "encoder.layers.");

  ConfigsRead read;
  if (options.config_dir) {
    if (!std::filesystem::is_directory(*options.config_dir))
      throw Error(ErrorCode::not_found, options.config_dir->string() + ": config folder not found");
    read = read_component_configs(*options.config_dir, m);
    if (!read.unet && !read.vae && !read.text_encoder && !read.scheduler)
      throw Error(ErrorCode::not_found, options.config_dir->string() +
                                            ": no unet/, vae/, text_encoder/ or scheduler/ config.json in the config folder");
    if (read.text_encoder && family_from_text_encoder(m.text_encoder) != m.family)
      throw Error(ErrorCode::invalid_argument, options.config_dir->string() + ": the config describes an " +
                                                   family_name(family_from_text_encoder(m.text_encoder)) +
                                                   " text encoder but the checkpoint holds an " + family_name(m.family) + " one");
  }

  m.unet_weights = map_unet_keys(parts.unet, path);
  m.vae_weights = map_vae_keys(parts.vae, path);
  const int use_layers = read.text_encoder ? m.text_encoder.num_hidden_layers
                                           : (parts.open_clip ? text_layers - 1 : text_layers);
  if (use_layers > text_layers || use_layers <= 0)
    throw Error(ErrorCode::invalid_argument, "the text encoder config asks for " + std::to_string(use_layers) +
                                                 " layers but " + path.string() + " has " + std::to_string(text_layers));
  m.text_encoder_weights = parts.open_clip ? map_open_clip_keys(parts.text, use_layers, path)
                                           : canonical_text_encoder_names(std::move(parts.text));

  if (!read.unet) infer_unet_config(m, path);
  if (!read.vae) infer_vae_config(m, path);
  if (!read.text_encoder) infer_text_encoder_config(m, text_layers, path);
  if (!read.scheduler) default_scheduler_config(m);
  if (!m.tokenizer_dir)
    m.assumptions.push_back("no tokenizer: a single file carries none; give a config folder that has a tokenizer/ folder");
  check_weights_match_configs(m, options.config_dir ? "the config folder " + options.config_dir->string()
                                                    : std::string("the ") + family_name(m.family) + " rules");
  return m;
}

}  // namespace fisedit::detail
