#pragma once
// The stages fisedit-bench times. Each builds its component on the backend, times it on inputs of the
// real scale (unit-normal latents and text states, token ids of real prompts), records the device
// memory its weights take and the peak above them, and frees it again before the next stage.
#include "backend/backend.h"
#include "backend/device.h"
#include "bench/measure.h"
#include "io/model_loader.h"
#include "models/unet.h"
#include "edit/sparse_step.h"
#include "pipeline/generation.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fisedit::bench {

struct Settings {
  std::string arch, model, config, tokenizer, scheduler, json;
  int width = 0, height = 0, steps = 20, repeat = 10, warmup = 2, generations = 3;
  float cfg = 7.5f;
  DeviceChoice device = DeviceChoice::automatic;
  std::set<std::string> stages;  // of text_encoder, unet, vae, generation, edit, edit_sizes, live, attention, fidelity
  std::vector<double> edit_sizes{0.05, 0.15, 0.30};  // latent shares of the whole-edit measurement
  // The edit stage's spilled runs: bytes of layer records kept on the device (the rest in pinned host
  // memory, prefetched a step ahead). 0 (the default): the whole cache on the host.
  std::size_t cache_device_budget = 0;
  int cache_prefetch_depth = 2;  // staging buffers: how many steps the prefetch may run ahead
  // The fidelity stage (bench/fidelity.h): how many cases, from which seed, where example PNGs go.
  int fidelity_cases = 200;
  std::uint64_t fidelity_seed = 7001;
  std::string fidelity_examples;
  bool scheduler_given = false;  // --scheduler named: the fidelity stage otherwise runs the model's own
  int mask_margin = 0, detect_steps = -1;  // its automatic edits' (EditRequest); -1: the default steps
};

// A compact blob (not a square) of about `fraction` of an h x w latent: a star-ish closed curve,
// r(theta) = R (1 + 0.22 sin(3 theta + 1) + 0.12 sin(5 theta + 2)), its R found by bisection.
LatentMask blob_mask(std::int64_t h, std::int64_t w, double fraction);

class Stages {
public:
  Stages(Backend& backend, std::shared_ptr<const LoadedModel> model, const Settings& settings);

  // Each returns {"time_ms": stats, "memory": {...}, ...}.
  nlohmann::json text_encoder();  // the CFG pair of prompts, [2, 77] ids
  nlohmann::json unet_step();     // one U-Net call on the CFG batch, [2, 4, H/8, W/8]
  nlohmann::json vae_decode();    // [1, 4, H/8, W/8] -> [1, 3, H, W]
  // StableDiffusion::generate, prompt to pixels; {"skipped": why} without a tokenizer.
  nlohmann::json generation();
  // Sparse U-Net steps of an edit against a recorded dense step, for edit regions of 1% to 50% of the
  // latent pixels (a centred square), with the dense step as the baseline; and the cache one step takes.
  // Then the cost of a cache beyond the device budget: `steps` sparse steps (10% region) with every
  // record on the device against the records spilled as a generation spills them (CacheSpill) and
  // prefetched, and, with a tokenizer, whole edits (painted 10% mask) of a resident and of a spilled
  // generation.
  nlohmann::json edit_steps();
  // Whole automatic edits (docs/method.md section 3) of a cached generation at each of Settings::edit_sizes: the
  // default dense detection steps with the edit prompt, then a blob mask of that size in place of the
  // detected one, sparse steps, crop decode and composite. Per size: the whole edit's time and its
  // parts, the sparse step's mean, the edited generation's cache bytes, and the fidelity against the
  // dense reference route with the same mask (PSNR of the image inside the changed region).
  // {"skipped": why} without a tokenizer.
  nlohmann::json edit_sizes();
  // Live editing (issue 14): what the engine adds between a pause in typing and the new image. A 5%
  // edit (blob mask, as edit_sizes) is started and cancelled after `live_cancel_after` of its own
  // time (the text changed again), then the next edit runs to the end: per round the cancel's latency
  // (request to return), the edit's time, and their sum (pause to image). {"skipped": why} without a
  // tokenizer.
  nlohmann::json live_edit();
  // The attention op alone on the U-Net's shapes (SD2 768x768 and SD1.5 512x512 self- and
  // cross-attention, CFG batch 2, and two sparse edits' self-attention), whatever the model: per-call
  // median ms and TFLOP/s (4 B heads Lq Lk D flops). Compare kernels with FISEDIT_ATTENTION=legacy and
  // the split-key route with FISEDIT_ATTENTION_SPLIT=off (see kernels/attention.cuh).
  nlohmann::json attention();

private:
  nlohmann::json spill_steps(UNet& unet, const DeviceTensor& sample, const DeviceTensor& context,
                             const LayerRecord& record);
  nlohmann::json spill_edit();

  // The stages' generation (kPrompt, the settings' size, steps, CFG and scheduler), resolved by `sd`.
  GenerationRequest request(const StableDiffusion& sd) const;

  // Weights = what the pool grew by while the component was built; peak above them = the rest.
  nlohmann::json memory(std::optional<std::size_t> before, std::optional<std::size_t> loaded) const;

  Backend& backend_;
  std::shared_ptr<const LoadedModel> model_;
  Settings s_;
  DeviceMemory memory_;
};

}  // namespace fisedit::bench
