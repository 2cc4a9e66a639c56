// fisedit-cli edit: generate a base image, then edit its prompt, re-rendering only the affected region.
#include "cli/commands.h"
#include "cli/session.h"
#include "io/atomic_file.h"
#include "core/error.h"
#include "io/image_file.h"
#include "io/request_json.h"
#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

namespace fisedit::cli {
namespace {

MaskMode parse_mask_mode(const std::string& s) {
  if (s == "auto") return MaskMode::automatic;
  if (s == "painted") return MaskMode::painted;
  if (s == "intersect") return MaskMode::intersect;
  throw std::invalid_argument("--mask-mode is auto, painted or intersect, not '" + s + "'");
}

}  // namespace

int edit_command(const std::vector<std::string>& raw) {
  auto names = generation_options();
  names.insert({"edit-prompt", "edit-negative", "mask", "mask-mode", "mask-margin", "detect-steps", "attention-control", "global-change",
                "base-out", "mask-out", "stats-json", "cache-device-budget"});
  const Arguments args(raw, names);
  if (!args.positional().empty()) throw std::invalid_argument("unexpected argument '" + args.positional()[0] + "'");
  auto r = parse_generation_request(args);

  EditRequest e;
  e.prompt = args.require("edit-prompt");
  e.negative_prompt = args.get("edit-negative").value_or(r.negative_prompt);
  if (const auto mask = args.get("mask")) e.painted_mask = read_png(*mask);
  e.mask_mode = parse_mask_mode(args.get("mask-mode").value_or(e.painted_mask ? "painted" : "auto"));
  if (e.mask_mode != MaskMode::automatic && !e.painted_mask)
    throw std::invalid_argument("--mask-mode painted and intersect need --mask FILE.png");
  e.margin = int_option(args, "mask-margin", kDefaultMaskMargin);
  e.whole_image_if_global = kDefaultWholeImageIfGlobal;
  if (const auto global = args.get("global-change")) {
    if (*global != "whole" && *global != "region")
      throw std::invalid_argument("--global-change expects whole or region, not '" + *global + "'");
    e.whole_image_if_global = *global == "whole";
  }
  e.detect_steps = int_option(args, "detect-steps", -1);
  if (const auto control = args.get("attention-control")) {
    if (*control != "on" && *control != "off")
      throw std::invalid_argument("--attention-control is on or off, not '" + *control + "'");
    e.attention_control = *control == "on";
  }

  const std::optional<std::size_t> device_budget = args.bytes("cache-device-budget");

  const auto session = open_session(args);
  session.sd->set_cache_device_budget(device_budget);
  r = session.sd->resolve(r);
  if (e.painted_mask && (e.painted_mask->width != r.width || e.painted_mask->height != r.height))
    throw Error(ErrorCode::invalid_argument, *args.get("mask") + ": the mask is " + std::to_string(e.painted_mask->width) + "x" +
                                                 std::to_string(e.painted_mask->height) + " pixels but the image is " +
                                                 std::to_string(r.width) + "x" + std::to_string(r.height));
  // The base is generated in this run, from the same initial noise if one is given: only the prompts
  // can stand in the way.
  GenerationRequest base_check = r;
  base_check.initial_noise.reset();
  GenerationRequest edited = base_check;
  edited.prompt = e.prompt;
  edited.negative_prompt = e.negative_prompt;
  if (!is_prompt_edit(base_check, edited))
    throw std::invalid_argument("--edit-prompt (and --edit-negative) say what --prompt and --negative say: nothing to "
                                "edit; change a word");
  std::fprintf(stderr, "device: %s\n", session.backend->name().c_str());
  // --batch-count N: the base of each seed, seed .. seed+N-1, and the same edit of it, one after another
  // (each base's cache is freed before the next); every file named with its seed ("out-<seed>.png").
  const int count = batch_count(args);
  const GenerationRequest first = r;
  for (int i = 0; i < count; ++i) {
    r.seed = first.seed + static_cast<std::uint64_t>(i);
    if (count > 1) std::fprintf(stderr, "image %d of %d: seed %llu\n", i + 1, count, static_cast<unsigned long long>(r.seed));
    std::fprintf(stderr, "base: %s\n", r.prompt.c_str());
    const auto base = session.sd->generate_cached(r, print_progress);
    std::fprintf(stderr, "edit: %s\n", e.prompt.c_str());
    const auto edit = session.sd->edit(base, e, print_progress);

    // On the CPU every byte is the host's, whatever the budget says.
    const bool on_device = session.backend->kind() == DeviceKind::cuda;
    const auto cache_device = on_device ? base.cache_bytes_device() : 0;
    const auto cache_host = on_device ? base.cache_bytes_host() : base.cache_bytes();
    // The edit's settings as the app's PNGs and projects spell them, detect_steps resolved to the steps
    // that ran (the request's -1 means default_detection_steps), then what the edit measured.
    nlohmann::json stats = edit_settings_to_json(e);
    stats.update(nlohmann::json{
        {"edit_fraction", edit.stats.edit_fraction},
        {"detect_steps", edit.stats.detect_steps},
        {"attention_control_steps", edit.stats.attention_control_steps},
        {"unconditional_reused_steps", edit.stats.unconditional_reused_steps},
        {"base_ms", base.result.timings.total_ms},
        {"detect_ms", edit.stats.detect_ms},
        {"sparse_ms", edit.stats.sparse_ms},
        {"first_sparse_step_ms", edit.stats.first_sparse_step_ms},
        {"decode_ms", edit.stats.decode_ms},
        {"edit_ms", edit.stats.total_ms},
        {"speedup", base.result.timings.total_ms / std::max(edit.stats.total_ms, 1e-9)},
        {"cache_bytes_device", cache_device},
        {"cache_bytes_host", cache_host},
        {"cache_device_budget", device_budget ? nlohmann::json(*device_budget) : nlohmann::json()},
        {"prefetched_bytes", edit.stats.prefetched_bytes},
        {"device", session.backend->name()},
    });

    auto edited_request = r;
    edited_request.prompt = e.prompt;
    edited_request.negative_prompt = e.negative_prompt;
    const std::string out = args.get("out") ? batch_path(*args.get("out"), r.seed, count) : "fisedit-" + std::to_string(r.seed) + "-edit.png";
    write_generation_png(out, edit.generation.result.image, edited_request, edit.generation.result, session,
                         {{"edit_of", r.prompt}, {"edit", stats}});
    if (const auto path = args.get("base-out")) write_generation_png(batch_path(*path, r.seed, count), base.result.image, r, base.result, session);
    if (const auto path = args.get("mask-out")) write_png(batch_path(*path, r.seed, count), edit.changed_region);
    if (const auto path = args.get("save-latents"))
      write_safetensors(batch_path(*path, r.seed, count), {{"latents", edit.generation.result.latents}});
    if (const auto path = args.get("stats-json")) {
      nlohmann::json file = stats;
      file["latent_mask"] = {{"width", edit.mask.width}, {"height", edit.mask.height}};
      const auto text = file.dump(2) + "\n";
      AtomicFile f(batch_path(*path, r.seed, count));
      f.write(reinterpret_cast<const std::byte*>(text.data()), text.size());
      f.commit();
    }
    std::fprintf(stderr, "wrote %s: %.1f%% of the image re-rendered in %.1f s (base %.1f s, %.1fx)\n", out.c_str(),
                 100.0 * edit.stats.edit_fraction, edit.stats.total_ms / 1000.0, base.result.timings.total_ms / 1000.0,
                 stats["speedup"].get<double>());
  }
  return 0;
}

}  // namespace fisedit::cli
