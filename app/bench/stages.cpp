// fisedit-bench's stages (stages.h): components, attention, sparse steps, spill, whole edits, generation.
#include "bench/stages.h"

#include "core/env.h"
#include "core/error.h"
#include "core/torch_random.h"
#include "models/text_encoder.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/generation.h"
#include "pipeline/step_replay.h"
#include "edit/cache_store.h"
#include "edit/sparse_step.h"
#include "text/clip_tokenizer.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <stop_token>
#include <thread>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>

namespace fisedit::bench {
namespace {

constexpr const char* kPrompt = "a photograph of an astronaut riding a horse on the moon, detailed, 8k";
constexpr const char* kNegative = "blurry, low quality";
constexpr const char* kEditPrompt = "a photograph of an astronaut riding a zebra on the moon, detailed, 8k";

// A centred square of about `fraction` of the h x w latent pixels.
LatentMask centred_square(std::int64_t h, std::int64_t w, double fraction) {
  LatentMask mask{h, w, std::vector<float>(static_cast<std::size_t>(h * w), 0.0f)};
  const auto side_h = std::max<std::int64_t>(1, std::lround(h * std::sqrt(fraction)));
  const auto side_w = std::max<std::int64_t>(1, std::lround(w * std::sqrt(fraction)));
  for (std::int64_t y = (h - side_h) / 2; y < (h - side_h) / 2 + side_h; ++y)
    for (std::int64_t x = (w - side_w) / 2; x < (w - side_w) / 2 + side_w; ++x) mask.values[static_cast<std::size_t>(y * w + x)] = 1.0f;
  return mask;
}

// Unit-normal values: what latents after scale_model_input and layer-normed text states look like.
Tensor normal(Shape shape, std::uint64_t seed) {
  const auto n = shape_numel(shape);
  return Tensor::from_f32(std::move(shape), TorchGenerator(seed).randn(n));
}

// [negative, prompt] token ids, [2, 77], as the pipeline's CFG batch; without a tokenizer, ids of the
// same length (attention cost does not depend on which tokens they are).
Tensor prompt_ids(const LoadedModel& model) {
  std::vector<std::int64_t> ids;
  if (model.tokenizer_dir) {
    const auto tokenizer = ClipTokenizer::from_folder(*model.tokenizer_dir);
    ids = tokenizer.encode(kNegative);
    const auto cond = tokenizer.encode(kPrompt);
    ids.insert(ids.end(), cond.begin(), cond.end());
  } else {
    for (int row = 0; row < 2; ++row)
      for (std::int64_t i = 0; i < ClipTokenizer::kMaxLength; ++i)
        ids.push_back(i == 0 ? 49406 : i < 12 + 4 * row ? 320 + 37 * i : 49407);  // BOS, words, EOS padding
  }
  return Tensor::from_i64({2, ClipTokenizer::kMaxLength}, ids);
}

nlohmann::json optional_bytes(std::optional<std::size_t> v) { return v ? nlohmann::json(*v) : nlohmann::json(); }

// PSNR (dB) of a against b over the pixels where `region` is white; null when they are equal there.
nlohmann::json psnr_inside(const Image8& a, const Image8& b, const Image8& region) {
  double sq = 0;
  std::size_t n = 0;
  const std::size_t pixels = static_cast<std::size_t>(a.width) * a.height;
  for (std::size_t i = 0; i < pixels; ++i) {
    if (region.pixels[i * static_cast<std::size_t>(region.channels)] < 128) continue;
    for (int ch = 0; ch < a.channels; ++ch) {
      const double d = double(a.pixels[i * a.channels + ch]) - double(b.pixels[i * b.channels + ch]);
      sq += d * d;
      ++n;
    }
  }
  if (n == 0 || sq == 0) return nullptr;
  return 10.0 * std::log10(255.0 * 255.0 / (sq / double(n)));
}

// The device time of each op of one run of `body`, largest first (each op timed alone).
nlohmann::json profile_ops(Backend& backend, const std::function<void()>& body) {
  backend.set_profiling(true);
  body();
  const auto times = backend.profile_report();
  backend.set_profiling(false);
  nlohmann::json ops = nlohmann::json::array();
  for (const auto& t : times)
    ops.push_back({{"op", t.op}, {"calls", t.calls}, {"total_ms", t.total_ms}, {"host_ms", t.host_ms}});
  return ops;
}

}  // namespace

LatentMask blob_mask(std::int64_t h, std::int64_t w, double fraction) {
  LatentMask mask{h, w, std::vector<float>(static_cast<std::size_t>(h * w), 0.0f)};
  const double cy = 0.46 * double(h), cx = 0.53 * double(w);
  const auto fill = [&](double radius) {
    std::int64_t on = 0;
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) {
        const double dy = (double(y) + 0.5 - cy) * 1.15, dx = (double(x) + 0.5 - cx) / 1.15;
        const double theta = std::atan2(dy, dx);
        const double r = radius * (1.0 + 0.22 * std::sin(3.0 * theta + 1.0) + 0.12 * std::sin(5.0 * theta + 2.0));
        const bool inside = dx * dx + dy * dy <= r * r;
        mask.values[static_cast<std::size_t>(y * w + x)] = inside ? 1.0f : 0.0f;
        on += inside;
      }
    return double(on) / double(h * w);
  };
  double lo = 0.0, hi = 2.0 * double(std::max(h, w));
  for (int i = 0; i < 40; ++i) {
    const double mid = (lo + hi) / 2;
    (fill(mid) < fraction ? lo : hi) = mid;
  }
  fill(hi);
  return mask;
}

Stages::Stages(Backend& backend, std::shared_ptr<const LoadedModel> model, const Settings& settings)
    : backend_(backend), model_(std::move(model)), s_(settings), memory_(backend) {}

nlohmann::json Stages::memory(std::optional<std::size_t> before, std::optional<std::size_t> loaded) const {
  const auto peak = memory_.peak();
  nlohmann::json m = {{"weights_bytes", nullptr}, {"peak_bytes", optional_bytes(peak)}, {"peak_above_weights_bytes", nullptr}};
  if (before && loaded) m["weights_bytes"] = *loaded - std::min(*loaded, *before);
  if (peak && loaded) m["peak_above_weights_bytes"] = *peak - std::min(*peak, *loaded);
  if (const auto driver = memory_.driver())
    m["driver"] = {{"used_bytes", driver->used}, {"total_bytes", driver->total}};
  return m;
}

nlohmann::json Stages::text_encoder() {
  const auto before = memory_.in_use();
  const TextEncoder encoder(backend_, model_->text_encoder, model_->text_encoder_weights);
  const auto loaded = memory_.in_use();
  const auto ids = backend_.upload(prompt_ids(*model_));
  memory_.reset_peak();
  const auto time = time_repeats(backend_, s_.warmup, s_.repeat, [&] { encoder.forward(ids); });
  return {{"time_ms", to_json(time)}, {"batch", 2}, {"memory", memory(before, loaded)}};
}

nlohmann::json Stages::unet_step() {
  const auto before = memory_.in_use();
  UNet unet(backend_, model_->unet, model_->unet_weights);
  const auto loaded = memory_.in_use();
  const std::int64_t h = s_.height / 8, w = s_.width / 8;
  const auto sample = backend_.nchw_to_nhwc(backend_.upload(normal({2, model_->unet.in_channels, h, w}, 1)));
  const auto context = backend_.upload(normal({2, 77, model_->unet.cross_attention_dim}, 2));
  const float timestep = 500.0f;
  memory_.reset_peak();
  Stats enqueue;
  const auto time = time_repeats(
      backend_, s_.warmup, s_.repeat, [&] { unet.forward(sample, std::span(&timestep, 1), context); }, &enqueue);
  return {{"time_ms", to_json(time)}, {"enqueue_ms", to_json(enqueue)}, {"batch", 2}, {"latent", {h, w}},
          {"memory", memory(before, loaded)}};
}

nlohmann::json Stages::edit_steps() {
  UNet unet(backend_, model_->unet, model_->unet_weights);
  const std::int64_t h = s_.height / 8, w = s_.width / 8;
  const auto sample = backend_.nchw_to_nhwc(backend_.upload(normal({2, model_->unet.in_channels, h, w}, 1)));
  const auto context = backend_.upload(normal({2, 77, model_->unet.cross_attention_dim}, 2));
  const float timestep = 500.0f;
  LayerRecord record;
  {
    SparseStep step(record);
    unet.forward(sample, std::span(&timestep, 1), context, &step);
  }
  const auto dense = time_repeats(backend_, s_.warmup, s_.repeat, [&] { unet.forward(sample, std::span(&timestep, 1), context); });
  nlohmann::json rows = nlohmann::json::array();
  for (const double fraction : {0.01, 0.05, 0.10, 0.20, 0.50}) {
    const LatentMask mask = centred_square(h, w, fraction);
    LayerRecord out;
    SparseLevels levels(mask);
    Stats enqueue;
    const auto time = time_repeats(
        backend_, s_.warmup, s_.repeat,
        [&] {
          SparseStep step(record, levels, out);
          unet.forward(sample, std::span(&timestep, 1), context, &step);
        },
        &enqueue);
    rows.push_back({{"edit_fraction", mask.fraction()}, {"time_ms", to_json(time)}, {"enqueue_ms", to_json(enqueue)},
                    {"speedup", dense.median / time.median}});
  }
  // Where the time of one dense step and of one 5% sparse step goes, op by op.
  const auto profile = [&](const std::function<void()>& body) { return profile_ops(backend_, body); };
  LatentMask five{h, w, std::vector<float>(static_cast<std::size_t>(h * w), 0.0f)};
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x)
      if (std::abs(y - h / 2) * 2 < h * 0.2236 && std::abs(x - w / 2) * 2 < w * 0.2236) five.values[static_cast<std::size_t>(y * w + x)] = 1.0f;
  SparseLevels five_levels(five);
  LayerRecord scratch;
  const auto dense_ops = profile([&] { unet.forward(sample, std::span(&timestep, 1), context); });
  const auto sparse_ops = profile([&] {
    SparseStep step(record, five_levels, scratch);
    unet.forward(sample, std::span(&timestep, 1), context, &step);
  });
  // A kept step of a cached generation's first detection steps (and of an edit's detection): outputs kept, the
  // cross-attention through explicit probabilities (what attention control reads).
  const auto explicit_step = [&] {
    LayerRecord kept;
    SparseStep step(kept);
    step.explicit_cross_attention();
    unet.forward(sample, std::span(&timestep, 1), context, &step);
  };
  const auto recorded = time_repeats(backend_, s_.warmup, s_.repeat, explicit_step);
  const auto recorded_ops = profile(explicit_step);
  // The same 5% sparse step recorded once and replayed (Backend::record, a CUDA graph): the device's
  // own time for the step's ops, with no host enqueueing them (an edit adds its copies in and out). As the
  // edit records it, with the time embeddings' projections ready-made (forward_projected); and, beside
  // it, computing them from the sinusoids in the step (forward_embedded): what the memo saves.
  const auto replayed = [&](bool projected) -> nlohmann::json {
    if (!backend_.can_record()) return {{"skipped", backend_.name() + " cannot record work"}};
    const DeviceTensor time = projected ? unet.time_projections(std::span(&timestep, 1), 2)
                                        : backend_.upload(unet.time_sinusoids(std::span(&timestep, 1), 2));
    LayerRecord replay_out;
    const auto step_body = [&] {
      SparseStep step(record, five_levels, replay_out);
      if (projected)
        unet.forward_projected(sample, time, context, &step);
      else
        unet.forward_embedded(sample, time, context, &step);
    };
    step_body();  // the plain step first: plans, levels and memos the recording finds
    std::string why;
    auto recording = backend_.record(step_body, &why);
    if (!recording) return {{"skipped", why}};
    Stats replay_enqueue;
    const auto t = time_repeats(backend_, s_.warmup, s_.repeat, [&] { recording->replay(); }, &replay_enqueue);
    // FISEDIT_BENCH_PROFILER_RANGE=1: one more replay inside a range for an outside profiler, e.g.
    // ncu --profile-from-start off --graph-profiling node (docs/benchmarks.md has the command).
    if (projected && env_flag("FISEDIT_BENCH_PROFILER_RANGE", false)) {
      backend_.external_profiler(true);
      recording->replay();
      backend_.external_profiler(false);
    }
    return {{"edit_fraction", five.fraction()}, {"time_ms", to_json(t)}, {"enqueue_ms", to_json(replay_enqueue)}};
  };
  const nlohmann::json replay = replayed(true), replay_embedded = replayed(false);
  // The step as an edit replays it (pipeline/step_replay.h): the recording scatters into its own copy of
  // the cached record, which each step copies in from the step's record, and copies out what it made
  // into the step's new record. Against the replays above: what the copies cost, and in-place scatters.
  nlohmann::json edit_replay = {{"skipped", backend_.name() + " cannot record work"}};
  if (backend_.can_record()) {
    SparseStepReplay step_replay(backend_, unet, five_levels, context);
    const auto input = backend_.nhwc_to_nchw(sample);
    LayerRecord out;
    if (step_replay.queue(record, record, input, timestep, out)) {
      Stats enqueue;
      const auto before = step_replay.times();
      const int replays_before = step_replay.replays();
      const auto t = time_repeats(
          backend_, s_.warmup, s_.repeat, [&] { step_replay.queue(record, record, input, timestep, out); }, &enqueue);
      const auto replays = std::max(1, step_replay.replays() - replays_before);
      edit_replay = {{"edit_fraction", five.fraction()},
                     {"time_ms", to_json(t)},
                     {"enqueue_ms", to_json(enqueue)},
                     {"copied_in_bytes_per_step", (step_replay.times().copied_in_bytes - before.copied_in_bytes) / replays},
                     {"copied_out_bytes_per_step", (step_replay.times().copied_out_bytes - before.copied_out_bytes) / replays}};
    } else {
      edit_replay = {{"skipped", step_replay.why_not()}};
    }
  }
  return {{"dense_time_ms", to_json(dense)}, {"sparse", rows}, {"cache_bytes_per_step", record.bytes()}, {"latent", {h, w}},
          {"recorded_explicit_step_ms", to_json(recorded)},
          {"profile_dense_step", dense_ops}, {"profile_sparse_step_5pct", sparse_ops},
          {"profile_recorded_explicit_step", recorded_ops}, {"replayed_sparse_step_5pct", replay},
          {"replayed_sparse_step_5pct_time_in_step", replay_embedded}, {"edit_replayed_step_5pct", edit_replay},
          {"spill_steps", spill_steps(unet, sample, context, record)}, {"spill_edit", spill_edit()}};
}

nlohmann::json Stages::spill_steps(UNet& unet, const DeviceTensor& sample, const DeviceTensor& context,
                                   const LayerRecord& record) {
  const std::int64_t h = s_.height / 8, w = s_.width / 8;
  const float timestep = 500.0f;
  const int n = s_.steps;
  // Every step's record is the one recorded step; spilled as a generation spills its steps, each step
  // with its own host copy (pinned memory: about `steps` records' worth at budget 0).
  const std::vector<LayerRecord> resident(static_cast<std::size_t>(n), record);
  std::vector<LayerRecord> spilled = resident;
  CacheSpill spill(backend_, s_.cache_device_budget, n);
  for (auto& step : spilled) spill.keep(step);
  backend_.synchronize_copies();
  CacheByteCounter placed;
  placed.add(spilled);

  SparseLevels levels(centred_square(h, w, 0.10));
  LayerRecord scratch;
  CachePrefetch::Stats prefetched;
  const auto run_steps = [&](const std::vector<LayerRecord>& steps) {
    CachePrefetch cache(backend_, steps, s_.cache_prefetch_depth);
    for (int i = 0; i < n; ++i) {
      const auto& cached = cache.acquire(static_cast<std::size_t>(i), &levels);
      SparseStep step(cached, levels, scratch, false, &steps[static_cast<std::size_t>(i)]);
      unet.forward(sample, std::span(&timestep, 1), context, &step);
      backend_.synchronize();  // as an edit's step does, downloading the model output for the sampler
    }
    prefetched = cache.stats();
  };
  const auto resident_time = time_repeats(backend_, s_.warmup, s_.repeat, [&] { run_steps(resident); });
  const auto spilled_time = time_repeats(backend_, s_.warmup, s_.repeat, [&] { run_steps(spilled); });
  return {{"steps", n},
          {"edit_fraction", levels.latent().fraction()},
          {"device_budget_bytes", s_.cache_device_budget},
          {"cache_bytes_device", placed.bytes().device},
          {"cache_bytes_host", placed.bytes().host},
          {"prefetch_depth", s_.cache_prefetch_depth},
          {"steps_spilled", spill.spilled_steps()},
          {"resident_time_ms", to_json(resident_time)},
          {"spilled_time_ms", to_json(spilled_time)},
          {"slowdown", spilled_time.median / resident_time.median},
          {"prefetched_bytes_per_run", prefetched.bytes_staged},
          {"host_bytes_not_read_per_run", prefetched.bytes_not_read}};
}

GenerationRequest Stages::request(const StableDiffusion& sd) const {
  return sd.resolve(
      GenerationRequest{kPrompt, kNegative, 1, s_.steps, s_.cfg, s_.scheduler, s_.width, s_.height, std::nullopt});
}

nlohmann::json Stages::spill_edit() {
  if (!model_->tokenizer_dir) return {{"skipped", "no tokenizer: pass --tokenizer DIR"}};
  if (s_.generations == 0) return {{"skipped", "--generations 0"}};
  StableDiffusion sd(model_, backend_);
  sd.set_cache_prefetch_depth(s_.cache_prefetch_depth);
  const GenerationRequest r = request(sd);
  // A painted mask: no detection steps, so every step reads the cache (the spill's worst case).
  const LatentMask square = centred_square(r.height / 8, r.width / 8, 0.10);
  Image8 painted{r.width, r.height, 1, std::vector<std::uint8_t>(static_cast<std::size_t>(r.width) * r.height, 0)};
  for (int y = 0; y < r.height; ++y)
    for (int x = 0; x < r.width; ++x)
      if (square.values[static_cast<std::size_t>((y / 8) * (r.width / 8) + x / 8)] != 0.0f)
        painted.pixels[static_cast<std::size_t>(y) * r.width + x] = 255;
  EditRequest e;
  e.prompt = kEditPrompt;
  e.negative_prompt = kNegative;
  e.mask_mode = MaskMode::painted;
  e.painted_mask = painted;

  nlohmann::json runs = nlohmann::json::object();
  std::vector<double> medians;
  for (const bool spill : {false, true}) {
    sd.set_cache_device_budget(spill ? std::optional<std::size_t>(s_.cache_device_budget) : std::nullopt);
    const auto base = sd.generate_cached(r);
    for (int i = 0; i < std::min(s_.warmup, 1); ++i) sd.edit(base, e);
    std::vector<double> total, sparse;
    std::size_t prefetched = 0;
    for (int i = 0; i < s_.generations; ++i) {
      const auto edited = sd.edit(base, e);
      total.push_back(edited.stats.total_ms);
      sparse.push_back(edited.stats.sparse_ms);
      prefetched = edited.stats.prefetched_bytes;
    }
    const auto t = summarize(total);
    medians.push_back(t.median);
    runs[spill ? "spilled" : "resident"] = {{"edit_ms", to_json(t)},
                                            {"sparse_ms", to_json(summarize(sparse))},
                                            {"cache_bytes_device", base.cache_bytes_device()},
                                            {"cache_bytes_host", base.cache_bytes_host()},
                                            {"prefetched_bytes", prefetched}};
  }
  runs["device_budget_bytes"] = s_.cache_device_budget;
  runs["prefetch_depth"] = s_.cache_prefetch_depth;
  runs["edit_fraction"] = square.fraction();
  runs["steps"] = r.steps;
  runs["slowdown"] = medians[1] / medians[0];
  return runs;
}

nlohmann::json Stages::attention() {
  struct Case {
    const char* name;
    std::int64_t batch, lq, lk, heads, head_dim;
  };
  static constexpr Case kCases[] = {
      {"sd2-768 L1 self 9216", 2, 9216, 9216, 5, 64},  {"sd2-768 L1 cross 9216x77", 2, 9216, 77, 5, 64},
      {"sd2-768 L2 self 2304", 2, 2304, 2304, 10, 64}, {"sd2-768 L2 cross 2304x77", 2, 2304, 77, 10, 64},
      {"sd2-768 L3 self 576", 2, 576, 576, 20, 64},    {"sd2-768 L3 cross 576x77", 2, 576, 77, 20, 64},
      {"sd2-768 mid self 144", 2, 144, 144, 20, 64},   {"sd15-512 L1 self 4096", 2, 4096, 4096, 8, 40},
      {"sd15-512 L1 cross 4096x77", 2, 4096, 77, 8, 40}, {"sd15-512 L2 self 1024", 2, 1024, 1024, 8, 80},
      {"sd15-512 L2 cross 1024x77", 2, 1024, 77, 8, 80}, {"sd15-512 L3 self 256", 2, 256, 256, 8, 160},
      {"sd15-512 L3 cross 256x77", 2, 256, 77, 8, 160}, {"sd15-512 mid self 64", 2, 64, 64, 8, 160},
      // A sparse edit's self-attention (its active positions against every key): the split-key route.
      {"sd2-768 L1 edit 500x9216", 2, 500, 9216, 5, 64}, {"sd2-768 L2 edit 125x2304", 2, 125, 2304, 10, 64},
  };
  const bool cuda = backend_.kind() == DeviceKind::cuda;
  const char* env = std::getenv("FISEDIT_ATTENTION");
  const char* split_env = std::getenv("FISEDIT_ATTENTION_SPLIT");
  const char* cudnn_env = std::getenv("FISEDIT_ATTENTION_CUDNN");
  nlohmann::json rows = nlohmann::json::array();
  std::uint64_t seed = 10;
  for (const auto& c : kCases) {
    const double flops = 4.0 * double(c.batch) * double(c.heads) * double(c.lq) * double(c.lk) * double(c.head_dim);
    nlohmann::json row = {{"case", c.name},   {"batch", c.batch}, {"lq", c.lq}, {"lk", c.lk},
                          {"heads", c.heads}, {"head_dim", c.head_dim}, {"gflop", flops / 1e9}};
    if (!cuda && flops > 2e9) {  // minutes each on a CPU
      row["skipped"] = "over 2 GFLOP on the CPU";
      rows.push_back(row);
      continue;
    }
    const std::int64_t channels = c.heads * c.head_dim;
    const auto q = backend_.upload(normal({c.batch, c.lq, channels}, seed++));
    const auto k = backend_.upload(normal({c.batch, c.lk, channels}, seed++));
    const auto v = backend_.upload(normal({c.batch, c.lk, channels}, seed++));
    AttentionParams params;
    params.heads = static_cast<int>(c.heads);
    params.scale = 1.0f / std::sqrt(float(c.head_dim));
    params.upcast = true;
    const auto call = [&] { (void)backend_.attention(q, k, v, params); };
    // Calls per sample: enough for about 2 ms, so that the synchronisation around a sample and the
    // launch gaps of the smallest shapes do not swamp the kernel's own time.
    const auto once = time_repeats(backend_, s_.warmup, 3, call);
    const int calls = static_cast<int>(std::clamp(std::ceil(2.0 / std::max(once.median, 1e-3)), 1.0, 1000.0));
    const auto samples = time_repeats(backend_, 0, s_.repeat, [&] {
      for (int i = 0; i < calls; ++i) call();
    });
    Stats per_call = samples;
    for (double* x : {&per_call.median, &per_call.min, &per_call.max, &per_call.mean, &per_call.stddev}) *x /= calls;
    row["calls_per_sample"] = calls;
    row["time_ms"] = to_json(per_call);
    row["tflops"] = flops / (per_call.median * 1e-3) / 1e12;
    // The device's own time per call (CUDA events around each op; no launch gaps).
    if (cuda) {
      backend_.set_profiling(true);
      for (int i = 0; i < s_.repeat; ++i) call();
      const auto times = backend_.profile_report();
      backend_.set_profiling(false);
      for (const auto& t : times)
        if (t.op == "attention" && t.calls > 0) {
          row["device_ms_mean"] = t.total_ms / t.calls;
          row["device_tflops"] = flops / (t.total_ms / t.calls * 1e-3) / 1e12;
        }
    }
    rows.push_back(row);
  }
  return {{"kernel_env", env ? nlohmann::json(env) : nlohmann::json()},
          {"split_env", split_env ? nlohmann::json(split_env) : nlohmann::json()},
          {"cudnn_env", cudnn_env ? nlohmann::json(cudnn_env) : nlohmann::json()},
          {"cases", rows}};
}

nlohmann::json Stages::vae_decode() {
  const auto before = memory_.in_use();
  const VaeDecoder decoder(backend_, model_->vae, model_->vae_weights);
  const auto loaded = memory_.in_use();
  const std::int64_t h = s_.height / 8, w = s_.width / 8;
  // Diffusion latents are about unit scale; the VAE takes them divided by the scaling factor.
  const auto z = backend_.scale(backend_.nchw_to_nhwc(backend_.upload(normal({1, model_->vae.latent_channels, h, w}, 3))),
                                1.0f / model_->vae.scaling_factor);
  memory_.reset_peak();
  const auto time = time_repeats(backend_, s_.warmup, s_.repeat, [&] { decoder.decode(z); });
  const auto ops = profile_ops(backend_, [&] { decoder.decode(z); });
  return {{"time_ms", to_json(time)}, {"batch", 1}, {"memory", memory(before, loaded)}, {"profile", ops}};
}

namespace {

// One edit's own timings and driver allocations (a first edit, a new mask's edit).
nlohmann::json one_edit(const EditStats& st) {
  return {{"edit_ms", st.total_ms},
          {"detect_ms", st.detect_ms},
          {"sparse_ms", st.sparse_ms},
          {"first_sparse_step_ms", st.first_sparse_step_ms},
          {"decode_ms", st.decode_ms},
          {"sparse_enqueue_ms", st.sparse_enqueue_ms},
          {"driver_allocations", st.driver_allocations},
          {"driver_allocation_ms", st.driver_allocation_ms},
          {"replay_record_ms", st.replay_record_ms},
          {"cache_flushes", st.cache_flushes}};
}

}  // namespace

nlohmann::json Stages::edit_sizes() {
  if (!model_->tokenizer_dir) return {{"skipped", "no tokenizer: pass --tokenizer DIR"}};
  StableDiffusion sd(model_, backend_);
  const GenerationRequest r = request(sd);
  const auto base = sd.generate_cached(r);
  // What the app does after a generation (ui/model_worker.cpp): a throwaway edit pays for what a
  // process's first edit needs made (StableDiffusion::prepare_editing). FISEDIT_BENCH_PREPARE_EDITING=0
  // leaves it to the first edit, as before.
  nlohmann::json prepared;
  if (env_flag("FISEDIT_BENCH_PREPARE_EDITING", true)) prepared = one_edit(sd.prepare_editing(base));
  const std::int64_t h = r.height / 8, w = r.width / 8;
  const int runs = std::max(1, s_.generations);
  nlohmann::json rows = nlohmann::json::array();
  for (const double size : s_.edit_sizes) {
    EditRequest e;
    e.prompt = kEditPrompt;
    e.negative_prompt = kNegative;
    e.mask_override = blob_mask(h, w, size);
    // Warm-up, and what a user's first edit with a new mask costs: its shapes (GEMM plans, pool
    // blocks) are new. FISEDIT_BENCH_PROFILE_FIRST_EDIT=1: the very first edit (first size) runs op by
    // op under the op profiler, its timings then the profiler's: which op's host time makes the first
    // edit after a generation slow.
    nlohmann::json first_ops;
    EditStats first;
    if (rows.empty() && env_flag("FISEDIT_BENCH_PROFILE_FIRST_EDIT", false))
      first_ops = profile_ops(backend_, [&] { first = sd.edit(base, e).stats; });
    else
      first = sd.edit(base, e).stats;
    std::vector<double> total, detect, sparse, decode, per_step, first_step, prepare_per_step, enqueue_per_step,
        wait_per_step, after_per_step, allocations, flushes;
    EditResult last;
    for (int i = 0; i < runs; ++i) {
      last = sd.edit(base, e);  // edit() downloads its results: every timing ends synchronised
      const auto& st = last.stats;
      total.push_back(st.total_ms);
      detect.push_back(st.detect_ms);
      sparse.push_back(st.sparse_ms);
      decode.push_back(st.decode_ms);
      per_step.push_back(st.sparse_ms / std::max(1, r.steps - st.detect_steps));
      first_step.push_back(st.first_sparse_step_ms);
      const double sparse_steps = std::max(1, r.steps - st.detect_steps);
      prepare_per_step.push_back(st.sparse_prepare_ms / sparse_steps);
      enqueue_per_step.push_back(st.sparse_enqueue_ms / sparse_steps);
      wait_per_step.push_back(st.sparse_wait_ms / sparse_steps);
      after_per_step.push_back(st.sparse_after_ms / sparse_steps);
      allocations.push_back(static_cast<double>(st.driver_allocations));
      flushes.push_back(static_cast<double>(st.cache_flushes));
    }
    // The same edits in the other mode: sparse steps replayed from one recording, or op by op
    // (pipeline/step_replay.h), and a check that both give the same latents bit for bit.
    nlohmann::json other_mode;
    if (backend_.can_record()) {
      const bool replay = sd.replay_sparse_steps();
      sd.set_replay_sparse_steps(!replay);
      std::vector<double> step_total, step_per_step, step_enqueue;
      EditResult plain;
      sd.edit(base, e);  // warm-up
      for (int i = 0; i < runs; ++i) {
        plain = sd.edit(base, e);
        const double sparse_steps = std::max(1, r.steps - plain.stats.detect_steps);
        step_total.push_back(plain.stats.total_ms);
        step_per_step.push_back(plain.stats.sparse_ms / sparse_steps);
        step_enqueue.push_back(plain.stats.sparse_enqueue_ms / sparse_steps);
      }
      sd.set_replay_sparse_steps(replay);
      other_mode = {{"replay", !replay},
                    {"replayed_steps", plain.stats.replayed_steps},
                    {"replay_note", plain.stats.replay_note},
                    {"edit_ms", to_json(summarize(step_total))},
                    {"sparse_step_ms", to_json(summarize(step_per_step))},
                    {"sparse_enqueue_ms_per_step", to_json(summarize(step_enqueue))},
                    {"same_latents", plain.generation.latents == last.generation.latents},
                    {"same_image", plain.generation.result.image.pixels == last.generation.result.image.pixels}};
    }
    // The same edits with the sampler on the host (every step's prediction downloaded, the next input
    // uploaded: pipeline/generation.h, set_sample_on_device), and a check that the latents are the same.
    nlohmann::json host_sampling;
    {
      const bool on_device = sd.sample_on_device();
      sd.set_sample_on_device(!on_device);
      std::vector<double> totals, other_per_step;
      EditResult other;
      sd.edit(base, e);  // warm-up
      for (int i = 0; i < runs; ++i) {
        other = sd.edit(base, e);
        totals.push_back(other.stats.total_ms);
        other_per_step.push_back(other.stats.sparse_ms / std::max(1, r.steps - other.stats.detect_steps));
      }
      sd.set_sample_on_device(on_device);
      host_sampling = {{"sample_on_device", !on_device},
                       {"edit_ms", to_json(summarize(totals))},
                       {"sparse_step_ms", to_json(summarize(other_per_step))},
                       {"same_latents", other.generation.latents == last.generation.latents},
                       {"same_image", other.generation.result.image.pixels == last.generation.result.image.pixels}};
    }
    // One more edit with timeline marks (Backend::mark): each part of the sparse steps as the device ran
    // it, the idle time before it included ("step": from one step's sampler to the next step's start).
    nlohmann::json step_marks = nlohmann::json::object();
    {
      backend_.set_marking(true);
      sd.edit(base, e);
      std::map<std::string, std::vector<double>> parts;
      for (const auto& m : backend_.take_marks()) parts[m.name].push_back(m.ms);
      backend_.set_marking(false);
      for (auto& [name, ms] : parts) step_marks[name] = to_json(summarize(std::move(ms)));
    }
    // One whole edit of the first size op by op (host and device time of each op, timed alone): to set
    // beside the isolated sparse step's profile (edit stage), for what an op costs inside an edit.
    nlohmann::json edit_ops;
    if (rows.empty()) edit_ops = profile_ops(backend_, [&] { sd.edit(base, e); });
    // An edit with a mask not seen before (a tenth larger: new row counts at every level, maybe a new
    // decode crop size) op by op: where a first edit's extra time goes (host time of plan making).
    auto fresh = e;
    // First, timed alone: an edit whose mask (three tenths larger) no edit had, as every prompt change
    // of a user brings (new row counts at every level, new GEMM shapes, maybe a new decode crop size).
    fresh.mask_override = blob_mask(h, w, std::min(1.0, size * 1.3));
    auto new_mask_row = one_edit(sd.edit(base, fresh).stats);
    new_mask_row["edit_fraction"] = std::min(1.0, size * 1.3);
    fresh.mask_override = blob_mask(h, w, std::min(1.0, size * 1.1));
    const auto new_mask_ops = profile_ops(backend_, [&] { sd.edit(base, fresh); });
    const std::size_t cache = last.generation.cache_bytes();
    // What the edit's record holds beyond its base's (entries it shares are the base's memory).
    std::size_t own_cache = 0;
    {
      CacheByteCounter counter;
      counter.add(base.steps);
      const auto shared = counter.bytes();
      counter.add(last.generation.steps);
      own_cache = counter.bytes().device + counter.bytes().host - shared.device - shared.host;
    }
    const std::size_t last_copied_in = last.stats.replay_copied_in_bytes, last_copied_out = last.stats.replay_copied_out_bytes;
    const int replayed_steps = last.stats.replayed_steps;
    const std::string replay_note = last.stats.replay_note;
    const Image8 sparse_image = last.generation.result.image, region = last.changed_region;
    last = {};
    auto dense = e;
    dense.dense_reference = true;
    const auto reference = sd.edit(base, dense);
    rows.push_back({{"edit_fraction", e.mask_override->fraction()},
                    {"requested_fraction", size},
                    {"detect_steps", reference.stats.detect_steps},
                    {"unconditional_reused_steps", reference.stats.unconditional_reused_steps},
                    {"replayed_steps", replayed_steps},
                    {"replay_note", replay_note},
                    {"replay", sd.replay_sparse_steps()},
                    {"other_mode", other_mode},
                    {"sample_on_device", sd.sample_on_device()},
                    {"other_sampling", host_sampling},
                    {"edit_ms", to_json(summarize(total))},
                    {"first_edit", one_edit(first)},
                    {"step_marks", step_marks},
                    {"profile_first_edit", first_ops},
                    {"own_cache_bytes", own_cache},
                    {"replay_copied_in_bytes", last_copied_in},
                    {"replay_copied_out_bytes", last_copied_out},
                    {"sparse_prepare_ms_per_step", to_json(summarize(prepare_per_step))},
                    {"sparse_enqueue_ms_per_step", to_json(summarize(enqueue_per_step))},
                    {"sparse_wait_ms_per_step", to_json(summarize(wait_per_step))},
                    {"sparse_after_ms_per_step", to_json(summarize(after_per_step))},
                    {"driver_allocations", to_json(summarize(allocations))},
                    {"cache_flushes", to_json(summarize(flushes))},
                    {"first_sparse_step_ms", to_json(summarize(first_step))},
                    {"detect_ms", to_json(summarize(detect))},
                    {"sparse_ms", to_json(summarize(sparse))},
                    {"sparse_step_ms", to_json(summarize(per_step))},
                    {"decode_ms", to_json(summarize(decode))},
                    {"dense_reference_edit_ms", reference.stats.total_ms},
                    {"cache_bytes", cache},
                    {"psnr_inside_db", psnr_inside(sparse_image, reference.generation.result.image, region)},
                    {"profile_whole_edit", edit_ops},
                    {"profile_new_mask_edit", new_mask_ops},
                    {"new_mask_edit", new_mask_row}});
  }
  return {{"steps", r.steps},
          {"scheduler", r.scheduler},
          {"base_cache_bytes", base.cache_bytes()},
          {"prepare_editing", prepared},
          {"sizes", rows}};
}

nlohmann::json Stages::live_edit() {
  if (!model_->tokenizer_dir) return {{"skipped", "no tokenizer: pass --tokenizer DIR"}};
  StableDiffusion sd(model_, backend_);
  const GenerationRequest r = request(sd);
  const auto base = sd.generate_cached(r);
  EditRequest stale;  // what the user had typed before the last pause
  stale.prompt = "a photograph of an astronaut riding a zeb on the moon, detailed, 8k";
  stale.negative_prompt = kNegative;
  stale.mask_override = blob_mask(r.height / 8, r.width / 8, 0.05);
  EditRequest typed = stale;
  typed.prompt = kEditPrompt;
  sd.edit(base, typed);  // warm-up: a new mask's first edit pays for its shapes (GEMM plans, pool blocks)
  const double whole = sd.edit(base, typed).stats.total_ms;  // the time a cancel cuts into
  const auto cancel_after = std::chrono::duration<double, std::milli>(whole * 0.5);
  std::vector<double> cancel, edit, pause_to_image;
  int cancelled = 0;
  for (int i = 0; i < std::max(1, s_.repeat); ++i) {
    std::stop_source stop;
    using clock = std::chrono::steady_clock;
    clock::time_point stop_requested;
    std::exception_ptr failure;
    std::thread running([&] {
      try {
        sd.edit(base, stale, {}, stop.get_token());
      } catch (const Error& e) {
        if (e.code() == ErrorCode::cancelled)
          ++cancelled;
        else
          failure = std::current_exception();
      } catch (...) {
        failure = std::current_exception();
      }
    });
    std::this_thread::sleep_for(cancel_after);
    stop_requested = clock::now();
    stop.request_stop();
    running.join();
    if (failure) std::rethrow_exception(failure);
    const auto t = clock::now();
    cancel.push_back(std::chrono::duration<double, std::milli>(t - stop_requested).count());
    sd.edit(base, typed);
    edit.push_back(std::chrono::duration<double, std::milli>(clock::now() - t).count());
    pause_to_image.push_back(cancel.back() + edit.back());
  }
  return {{"edit_fraction", stale.mask_override->fraction()},
          {"cancelled_after_ms", cancel_after.count()},
          {"cancelled", cancelled},
          {"rounds", cancel.size()},
          {"cancel_latency_ms", to_json(summarize(cancel))},
          {"edit_ms", to_json(summarize(edit))},
          {"pause_to_image_ms", to_json(summarize(pause_to_image))}};
}

nlohmann::json Stages::generation() {
  if (!model_->tokenizer_dir) return {{"skipped", "no tokenizer: pass --tokenizer DIR"}};
  if (s_.generations == 0) return {{"skipped", "--generations 0"}};
  const auto before = memory_.in_use();
  StableDiffusion sd(model_, backend_);
  const auto loaded = memory_.in_use();
  const GenerationRequest r = request(sd);
  if (s_.warmup > 0) {  // a short run warms every stage at this size; the step count does not matter
    auto warm = r;
    warm.steps = std::min(r.steps, 2);
    sd.generate(warm);
  }
  memory_.reset_peak();
  std::vector<double> total, text, unet, vae;
  GenerationResult last;
  for (int i = 0; i < s_.generations; ++i) {
    last = sd.generate(r);  // generate() downloads its results: every timing ends synchronised
    total.push_back(last.timings.total_ms);
    text.push_back(last.timings.text_encoder_ms);
    unet.push_back(last.timings.unet_ms);
    vae.push_back(last.timings.vae_ms);
  }
  std::vector<double> per_step = unet;
  for (auto& v : per_step) v /= r.steps;

  // The same request keeping its activation cache, as the app and every editable generation run it:
  // every step's outputs stay alive (new device memory each step) and its first steps take the explicit
  // cross-attention route that attention control reads. Peak memory is taken before these runs.
  const auto peak_memory = memory(before, loaded);
  std::vector<double> cached_total, cached_unet;
  for (int i = 0; i < s_.generations; ++i) {
    const auto cached = sd.generate_cached(r);
    cached_total.push_back(cached.result.timings.total_ms);
    cached_unet.push_back(cached.result.timings.unet_ms / r.steps);
  }

  // A random model's image is noise, but it must be finite noise of a sane scale.
  const auto latents = last.latents.to_f32(), decoded = last.decoded.to_f32();
  double sq = 0, peak = 0;
  for (float v : latents) sq += double(v) * v, peak = std::max(peak, double(std::abs(v)));
  const auto finite = [](const std::vector<float>& v) { return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }); };
  return {{"time_ms", to_json(summarize(total))},
          {"text_encoder_ms", to_json(summarize(text))},
          {"unet_ms", to_json(summarize(unet))},
          {"unet_per_step_ms", to_json(summarize(per_step))},
          {"vae_ms", to_json(summarize(vae))},
          {"steps", r.steps},
          {"scheduler", r.scheduler},
          {"cached_time_ms", to_json(summarize(cached_total))},
          {"cached_unet_per_step_ms", to_json(summarize(cached_unet))},
          {"memory", peak_memory},
          {"checks", {{"latents_rms", std::sqrt(sq / double(latents.size()))}, {"latents_max_abs", peak},
                      {"finite", finite(latents) && finite(decoded)}}}};
}

}  // namespace fisedit::bench
