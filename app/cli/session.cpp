// The generation options and model session that fisedit-cli's generate and edit commands share.
#include "cli/session.h"

#include "backend/device.h"
#include "core/error.h"
#include "io/a1111_parameters.h"
#include "io/atomic_file.h"
#include "io/image_file.h"
#include "io/image_read.h"
#include "io/model_loader.h"
#include "io/request_json.h"
#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <filesystem>
#include <cstdio>
#include <random>
#include <stdexcept>

namespace fisedit::cli {
namespace {

template <class T>
T parse_number(const Arguments& args, const std::string& name, T fallback) {
  const auto text = args.get(name);
  if (!text) return fallback;
  T value{};
  const auto* end = text->data() + text->size();
  const auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end) throw std::invalid_argument("--" + name + " expects a number, not '" + *text + "'");
  return value;
}

// FILE or FILE#KEY: the tensor KEY of a safetensors file, or its only tensor.
Tensor read_noise(const std::string& spec) {
  const auto hash = spec.rfind('#');
  const auto file = SafetensorsFile::open(hash == std::string::npos ? spec : spec.substr(0, hash));
  if (hash != std::string::npos) {
    const auto t = file.tensor(spec.substr(hash + 1));
    return Tensor::from_f32(t.shape(), t.to_f32());
  }
  if (file.tensors().size() != 1)
    throw Error(ErrorCode::invalid_argument, spec + ": holds " + std::to_string(file.tensors().size()) +
                                                 " tensors; name one as FILE#KEY");
  const auto t = file.tensor(file.tensors().front());
  return Tensor::from_f32(t.shape(), t.to_f32());
}

nlohmann::json record(const GenerationRequest& r, const GenerationResult& result, const LoadedModel& model,
                      const Backend& backend) {
  auto json = to_json(r);  // the request's keys, as the app's PNGs and projects spell them
  json["model"] = model.source.filename().string();
  json["model_family"] = family_name(model.family);
  json["device"] = backend.name();
  json["timings_ms"] = {{"text_encoder", result.timings.text_encoder_ms}, {"unet", result.timings.unet_ms},
                        {"vae", result.timings.vae_ms}, {"total", result.timings.total_ms}};
  return json;
}

}  // namespace

int int_option(const Arguments& args, const std::string& name, int fallback) {
  return parse_number<int>(args, name, fallback);
}

std::set<std::string> generation_options() {
  return {"model", "config", "prompt", "negative", "seed", "steps", "cfg", "scheduler", "width",
          "height", "device", "out", "save-latents", "initial-noise", "init-image", "strength", "batch-count"};
}

int batch_count(const Arguments& args) {
  const auto text = args.get("batch-count");
  if (!text) return 1;
  const int count = parse_number<int>(args, "batch-count", 1);
  if (count < 1 || count > kMaxBatchCount)
    throw std::invalid_argument("--batch-count must be between 1 and " + std::to_string(kMaxBatchCount) + ", not " + *text);
  if (count > 1 && args.get("initial-noise"))
    throw std::invalid_argument("--batch-count above 1 cannot be combined with --initial-noise (every image would start "
                                "from the same noise, whatever its seed)");
  return count;
}

std::string batch_path(const std::string& path, std::uint64_t seed, int count) {
  if (count <= 1) return path;
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + "-" + std::to_string(seed) + p.extension().string())).string();
}

GenerationRequest parse_generation_request(const Arguments& args) {
  GenerationRequest r;
  r.prompt = args.require("prompt");
  r.negative_prompt = args.get("negative").value_or("");
  r.seed = args.get("seed") ? parse_number<std::uint64_t>(args, "seed", 0) : std::random_device{}();
  r.steps = parse_number<int>(args, "steps", 50);
  r.cfg_scale = parse_number<float>(args, "cfg", 7.5f);
  r.scheduler = args.get("scheduler").value_or("");
  r.width = parse_number<int>(args, "width", 0);
  r.height = parse_number<int>(args, "height", 0);
  if (const auto noise = args.get("initial-noise")) r.initial_noise = read_noise(*noise);
  // Image to image: a PNG or JPEG, encoded by the VAE and noised to `strength` of the schedule.
  if (const auto image = args.get("init-image")) {
    r.init_image = read_image(*image);
    r.init_image_name = std::filesystem::path(*image).filename().string();
    r.strength = parse_number<float>(args, "strength", 0.75f);
    if (!(r.strength > 0.0f && r.strength <= 1.0f))
      throw std::invalid_argument("--strength must be above 0 and at most 1, not " + *args.get("strength"));
  } else if (args.get("strength")) {
    throw std::invalid_argument("--strength needs --init-image FILE (the image to start from)");
  }
  for (const auto& [name, value] : {std::pair{"width", r.width}, std::pair{"height", r.height}})
    if (args.get(name) && (value <= 0 || value > kMaxImageSide))
      throw std::invalid_argument("--" + std::string(name) + " must be between 8 and " + std::to_string(kMaxImageSide) +
                                  " (a multiple of 8), not " + *args.get(name));
  // Every file a batch writes is checked before any work.
  const int count = batch_count(args);
  for (const char* output : {"out", "save-latents", "base-out", "mask-out", "stats-json"})
    if (const auto path = args.get(output))
      for (int i = 0; i < count; ++i) check_output_path(batch_path(*path, r.seed + static_cast<std::uint64_t>(i), count));
  return r;
}

Session open_session(const Arguments& args) {
  const auto device = parse_device_choice(args.get("device").value_or("auto"));
  LoadOptions options;
  if (auto config = args.get("config")) options.config_dir = *config;
  Session s;
  s.model = std::make_shared<const LoadedModel>(load_model(args.require("model"), options));
  s.backend = make_backend(device);
  s.sd = std::make_unique<StableDiffusion>(s.model, *s.backend);
  return s;
}

void print_progress(const GenerationProgress& p) {
  std::fprintf(stderr, "step %d/%d  %.1f s\n", p.step, p.total, p.elapsed_ms / 1000.0);
}

void write_generation_png(const std::string& path, const Image8& image, const GenerationRequest& r,
                          const GenerationResult& result, const Session& session, const nlohmann::json& extra) {
  auto json = record(r, result, *session.model, *session.backend);
  for (const auto& [key, value] : extra.items()) json[key] = value;
  write_png(path, image, {{"parameters", a1111_parameters(r, session.model->source.filename().string())},
                          {"fisedit", json.dump()}});
}

}  // namespace fisedit::cli
