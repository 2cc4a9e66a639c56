// Loading a diffusers pipeline folder: model_index.json plus unet/, vae/, text_encoder/, tokenizer/,
// scheduler/, each with its config and weights (one .safetensors file, or shards listed in an index).
#include "core/error.h"
#include "io/json_file.h"
#include "io/model_loader_internal.h"
#include "io/safetensors.h"

#include <array>
#include <set>

namespace fisedit::detail {
namespace {

WeightMap all_tensors(const SafetensorsFile& file) {
  WeightMap out;
  for (const auto& info : file.tensors()) out.emplace(info.name, file.tensor(info));
  return out;
}

// `index` maps tensor names to shard file names ({"weight_map": {...}}); every listed tensor must be in
// its shard.
WeightMap load_sharded(const std::filesystem::path& index_path) {
  const auto index = read_json_file(index_path);
  const auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object())
    throw Error(ErrorCode::corrupt_file, index_path.string() + ": no \"weight_map\" object");
  std::map<std::string, SafetensorsFile> shards;
  WeightMap out;
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string()) throw Error(ErrorCode::corrupt_file, index_path.string() + ": shard of '" + name + "' is not a file name");
    const auto shard_name = shard.get<std::string>();
    if (shard_name.find('/') != std::string::npos || shard_name.find("..") != std::string::npos)
      throw Error(ErrorCode::corrupt_file, index_path.string() + ": shard name '" + shard_name + "' leaves the folder");
    auto it = shards.find(shard_name);
    if (it == shards.end()) it = shards.emplace(shard_name, SafetensorsFile::open(index_path.parent_path() / shard_name)).first;
    const auto* info = it->second.find(name);
    if (!info)
      throw Error(ErrorCode::corrupt_file, index_path.string() + ": tensor '" + name + "' is listed in shard " + shard_name +
                                               " but that file does not have it");
    out.emplace(name, it->second.tensor(*info));
  }
  return out;
}

// Weights of one component, in the order diffusers itself prefers them.
WeightMap load_component_weights(const std::filesystem::path& dir, const char* component) {
  const std::array<std::string, 2> stems = {"diffusion_pytorch_model", "model"};
  for (const auto& stem : stems) {
    for (const auto* variant : {"", ".fp16"}) {
      const auto single = dir / (stem + variant + ".safetensors");
      if (std::filesystem::exists(single)) return all_tensors(SafetensorsFile::open(single));
      const auto index = dir / (stem + variant + ".safetensors.index.json");
      if (std::filesystem::exists(index)) return load_sharded(index);
    }
  }
  for (const auto& stem : stems)
    if (std::filesystem::exists(dir / (stem + ".bin")))
      throw Error(ErrorCode::unsupported,
                  (dir / (stem + ".bin")).string() + ": the " + component +
                      " weights are a pickled .bin file, which fisedit does not open (loading a pickle can run code); "
                      "convert the folder to safetensors, e.g. pipe = StableDiffusionPipeline.from_pretrained(DIR); "
                      "pipe.save_pretrained(OUT, safe_serialization=True)");
  throw Error(ErrorCode::not_found, dir.string() + ": no " + component + " weights (expected diffusion_pytorch_model.safetensors, "
                                                   "model.safetensors or a sharded *.safetensors.index.json)");
}

}  // namespace

LoadedModel load_diffusers_folder(const std::filesystem::path& dir) {
  const auto index_path = dir / "model_index.json";
  if (!std::filesystem::exists(index_path))
    throw Error(ErrorCode::not_found, dir.string() + ": not a diffusers pipeline folder (model_index.json is missing)");
  const auto index = read_json_file(index_path);
  if (!index.is_object()) throw Error(ErrorCode::corrupt_file, index_path.string() + ": not a JSON object");
  const auto class_it = index.find("_class_name");
  if (class_it != index.end() && !class_it->is_string())
    throw Error(ErrorCode::corrupt_file, index_path.string() + ": \"_class_name\" must be a string");
  const auto class_name = class_it == index.end() ? std::string() : class_it->get<std::string>();
  if (class_name.find("XL") != std::string::npos || index.contains("text_encoder_2"))
    throw Error(ErrorCode::unsupported, dir.string() + ": " + class_name + " (SDXL) is not supported; fisedit runs Stable Diffusion 1.x and 2.x");

  for (const auto* component : {"unet", "vae", "text_encoder", "tokenizer", "scheduler"})
    if (!std::filesystem::is_directory(dir / component))
      throw Error(ErrorCode::not_found, dir.string() + ": the pipeline folder has no " + component + "/ component");

  LoadedModel model;
  model.source = dir;
  model.format = ModelFormat::diffusers_folder;
  const auto read = read_component_configs(dir, model);
  for (auto [ok, file] : {std::pair{read.unet, "unet/config.json"}, std::pair{read.vae, "vae/config.json"},
                          std::pair{read.text_encoder, "text_encoder/config.json"},
                          std::pair{read.scheduler, "scheduler/scheduler_config.json"}})
    if (!ok) throw Error(ErrorCode::not_found, (dir / file).string() + ": missing");
  if (!model.tokenizer_dir)
    throw Error(ErrorCode::not_found, (dir / "tokenizer").string() + ": no vocab.json or tokenizer.json");

  model.family = family_from_text_encoder(model.text_encoder);
  model.unet_weights = load_component_weights(dir / "unet", "unet");
  model.vae_weights = load_component_weights(dir / "vae", "vae");
  model.text_encoder_weights = canonical_text_encoder_names(load_component_weights(dir / "text_encoder", "text_encoder"));
  check_weights_match_configs(model, "the folder's config.json");
  return model;
}

}  // namespace fisedit::detail
