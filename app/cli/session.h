#pragma once
// What the generate and edit commands share: their generation options, the loaded model on the
// chosen device, progress lines and the PNG they write.
#include "backend/backend.h"
#include "cli/arguments.h"
#include "pipeline/generation.h"

#include <memory>
#include <nlohmann/json.hpp>

#include <set>
#include <string>

namespace fisedit::cli {

// --model --config --prompt --negative --seed --steps --cfg --scheduler --width --height --device
// --out --save-latents --initial-noise --init-image --strength --batch-count
std::set<std::string> generation_options();
// A request from those options (seed random when not given); throws std::invalid_argument.
GenerationRequest parse_generation_request(const Arguments& args);

// The most images --batch-count asks for (the app's batch count has the same limit).
inline constexpr int kMaxBatchCount = 16;
// --batch-count N: N images, seeds seed, seed+1, ..., seed+N-1 (AUTOMATIC1111's rule; a random seed
// is drawn once). 1 when absent; throws std::invalid_argument outside 1..kMaxBatchCount, or above 1
// with --initial-noise (which would give every image the same noise).
int batch_count(const Arguments& args);
// Where the file of `seed` goes in a batch of `count`: `path` itself for one image, else the seed
// inserted before the extension ("out.png" -> "out-42.png", "out" -> "out-42").
std::string batch_path(const std::string& path, std::uint64_t seed, int count);

// An integer option; throws std::invalid_argument when it is not a number.
int int_option(const Arguments& args, const std::string& name, int fallback);

struct Session {
  std::shared_ptr<const LoadedModel> model;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<StableDiffusion> sd;
};
// Loads --model (with --config) on --device; prints the device on stderr.
Session open_session(const Arguments& args);

// Prints "step i/N  t s" on stderr.
void print_progress(const GenerationProgress& p);

// The image with AUTOMATIC1111's parameters chunk and fisedit's JSON record (plus `extra` fields).
void write_generation_png(const std::string& path, const Image8& image, const GenerationRequest& r,
                          const GenerationResult& result, const Session& session, const nlohmann::json& extra = {});

}  // namespace fisedit::cli
