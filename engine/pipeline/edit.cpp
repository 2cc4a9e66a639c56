// A prompt edit of a cached generation (docs/method.md section 3): dense detection steps with the new
// prompt find the affected region, the remaining steps recompute only that region against the cache,
// and the decoded result is composited onto the previous image.
#include "core/env.h"
#include "core/error.h"
#include "pipeline/generation.h"
#include "pipeline/step_clock.h"
#include "models/unet.h"
#include "pipeline/step_replay.h"
#include "sched/scheduler.h"
#include "edit/cache_store.h"
#include "edit/edit_mask.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <cmath>
#include <numbers>

namespace fisedit {
namespace {

using pipeline_detail::Clock;
using pipeline_detail::check_finite;
using pipeline_detail::ms_since;

void check_stop(const std::stop_token& stop) { pipeline_detail::check_stop(stop, "edit"); }

// Sum over channels of |a - b| per latent pixel; a, b are [C, h, w].
std::vector<float> channel_l1(const std::vector<float>& a, const std::vector<float>& b, std::int64_t pixels) {
  std::vector<float> d(static_cast<std::size_t>(pixels), 0.0f);
  for (std::size_t i = 0; i < a.size(); ++i) d[i % d.size()] += std::fabs(a[i] - b[i]);
  return d;
}

// x where the mask is set, cached elsewhere; [C, h, w] latents, mask [h, w].
void keep_outside(std::vector<float>& x, const std::vector<float>& cached, const LatentMask& mask) {
  const std::size_t pixels = mask.values.size();
  for (std::size_t i = 0; i < x.size(); ++i)
    if (mask.values[i % pixels] == 0.0f) x[i] = cached[i];
}

int detection_steps(const EditRequest& e, int steps) {
  if (e.mask_mode == MaskMode::painted) return 0;
  const int k = e.detect_steps >= 0 ? e.detect_steps : default_detection_steps(steps);
  if (k > steps)
    throw Error(ErrorCode::invalid_argument, "detection steps (" + std::to_string(k) + ") exceed the steps (" +
                                                 std::to_string(steps) + ")");
  if (k == 0 && e.mask_mode != MaskMode::painted)
    throw Error(ErrorCode::invalid_argument, "an automatic mask needs at least one detection step");
  return k;
}

// The latent box a decode of the edit needs: the mask's bounding box, widened by the feathered alpha's
// reach and by kDecodeContext latent pixels of surrounding context for the decoder's convolutions,
// then to a multiple of decode_quantum() latent pixels per side (or the whole side). Every new crop size
// costs the decoder's convolutions new plans: the engines timed for the first size are reused untimed
// (docs/design-notes.md, "untimed engines"), 10-20 ms more for the first decode of a size on an H100.
// Steps of 16 latent pixels (128 image pixels): an SD2 768 image has 36 crop sizes. Measured against
// steps of 32 (H100, 2026-12-07): the 5% / 15% / 30% SD2 768 decode 11.7 / 15.1 / 21.3 -> 9.4 / 14.0 /
// 18.9 ms; SD1.5 512 unchanged; steps of 8 no better.
using LatentBox = LatentMask::Box;
constexpr std::int64_t kDecodeContext = 4;
// FISEDIT_DECODE_QUANTUM (read once; 8 to 64 latent pixels): the benchmark's knob for the trade between
// a smaller crop and more crop sizes.
std::int64_t decode_quantum() {
  static const std::int64_t q = std::min<std::int64_t>(64, env_int("FISEDIT_DECODE_QUANTUM", 16, 8));
  return q;
}

// [lo, hi) widened within [0, n) to a multiple of decode_quantum(), or to all of n.
void quantize_span(std::int64_t& lo, std::int64_t& hi, std::int64_t n) {
  const std::int64_t quantum = decode_quantum();
  const std::int64_t size = std::min(n, (hi - lo + quantum - 1) / quantum * quantum);
  hi = std::min(n, lo + size);
  lo = hi - size;
}

std::optional<LatentBox> decode_box(const LatentMask& mask, int feather) {
  const auto box = mask.bounds();
  if (!box) return std::nullopt;
  const std::int64_t grow = (2 * feather + 7) / 8 + kDecodeContext;
  LatentBox out{std::max<std::int64_t>(0, box->y0 - grow), std::min(mask.height, box->y1 + grow),
                std::max<std::int64_t>(0, box->x0 - grow), std::min(mask.width, box->x1 + grow)};
  quantize_span(out.y0, out.y1, mask.height);
  quantize_span(out.x0, out.x1, mask.width);
  return out;
}

// FISEDIT_REPLAY_FIRST_STEP=0 (read once): the first sparse step runs op by op and the second is
// recorded, as before the first one was (the benchmark's comparison).
bool replay_first_step() {
  static const bool on = env_flag("FISEDIT_REPLAY_FIRST_STEP", true);
  return on;
}

}  // namespace

void StableDiffusion::decode_region(const CachedGeneration& base, const std::vector<float>& latents,
                                    const LatentMask& mask, int feather, const std::vector<float>& alpha,
                                    CachedGeneration& gen) {
  const std::int64_t h = mask.height, w = mask.width, c = model_->unet.in_channels;
  const auto box = decode_box(mask, feather);
  if (!box) {  // nothing changed: the previous image as it was
    gen.result.image = base.result.image;
    gen.result.decoded = base.result.decoded;
    gen.decoder_norms = base.decoder_norms;
    return;
  }
  // A mask over everything decodes with its own statistics: the dense generation's image.
  if (mask.full() || base.decoder_norms.empty()) {
    NormTape tape;
    decode(latents, h, w, gen.result, &tape);
    gen.decoder_norms = std::move(tape.stats);
    gen.result.image = composite(base.result.image, gen.result.image, alpha);
    return;
  }
  // The region's crop, with the whole previous image's GroupNorm statistics (docs/method.md section 3.12).
  const std::int64_t bh = box->y1 - box->y0, bw = box->x1 - box->x0;
  std::vector<float> crop(static_cast<std::size_t>(c * bh * bw));
  for (std::int64_t k = 0; k < c; ++k)
    for (std::int64_t y = 0; y < bh; ++y)
      for (std::int64_t x = 0; x < bw; ++x)
        crop[static_cast<std::size_t>((k * bh + y) * bw + x)] =
            latents[static_cast<std::size_t>((k * h + box->y0 + y) * w + box->x0 + x)];
  NormTape tape{base.decoder_norms, true};
  GenerationResult part;
  decode(crop, bh, bw, part, &tape, false);
  gen.decoder_norms = base.decoder_norms;
  // Paste the crop into the previous image and blend it there: alpha is 0 outside the crop (decode_box
  // widens the mask by the feather's reach), so the rest of the image is left as it was.
  gen.result.image = base.result.image;
  const int width = static_cast<int>(8 * w);
  for (std::int64_t y = 0; y < 8 * bh; ++y)
    std::copy_n(&part.image.pixels[static_cast<std::size_t>(y * 8 * bw * 3)], 8 * bw * 3,
                &gen.result.image.pixels[static_cast<std::size_t>(((8 * box->y0 + y) * width + 8 * box->x0) * 3)]);
  composite_into(gen.result.image, base.result.image, alpha, static_cast<int>(8 * box->x0), static_cast<int>(8 * box->y0),
                 static_cast<int>(8 * box->x1), static_cast<int>(8 * box->y1));
  gen.result.decoded = Tensor();  // only the crop was decoded
}

bool StableDiffusion::default_reuse_unconditional() {
  static const bool on = env_flag("FISEDIT_DETECT_REUSE_UNCOND", true);
  return on;
}

EditStats StableDiffusion::prepare_editing(const CachedGeneration& base, std::stop_token stop) {
  const std::int64_t h = base.request.height / 8, w = base.request.width / 8;
  // A disc of 5% of the latent at the centre: the size of a typical prompt edit's region.
  constexpr double kFraction = 0.05;
  const double radius = std::sqrt(kFraction * double(h * w) / std::numbers::pi);
  LatentMask disc{h, w, std::vector<float>(static_cast<std::size_t>(h * w), 0.0f)};
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t x = 0; x < w; ++x) {
      const double dy = double(y) + 0.5 - 0.5 * double(h), dx = double(x) + 0.5 - 0.5 * double(w);
      if (dy * dy + dx * dx <= radius * radius) disc.values[static_cast<std::size_t>(y * w + x)] = 1.0f;
    }
  // A prompt one token longer than the base's: with the base's own prompt the detection steps would
  // compute nothing (the base's record has their results), and their shapes would stay cold.
  EditRequest e;
  e.prompt = base.request.prompt + " .";
  e.negative_prompt = base.request.negative_prompt;
  e.mask_override = std::move(disc);
  return edit(base, e, {}, stop).stats;
}

EditResult StableDiffusion::edit(const CachedGeneration& base, const EditRequest& e, const ProgressCallback& progress,
                                 std::stop_token stop) {
  const auto t0 = Clock::now();
  GenerationRequest r = base.request;
  r.prompt = e.prompt;
  r.negative_prompt = e.negative_prompt;
  // An image-to-image base ran the schedule from step `start` (generation.h, CachedGeneration): the
  // edit replays the same steps from the same noised image; `steps` counts the steps run, and the
  // scheduler's index of step i is start + i.
  const int start = start_step(r);
  const int steps = r.steps - start;
  if (base.steps.size() != static_cast<std::size_t>(steps) || base.latents.size() != base.steps.size() + 1)
    throw Error(ErrorCode::invalid_argument, "the base generation has no activation cache to edit");
  if (e.mask_mode != MaskMode::automatic && !e.painted_mask)
    throw Error(ErrorCode::invalid_argument, "this mask mode needs a painted mask");
  if (e.margin < 0 || e.feather < 0) throw Error(ErrorCode::invalid_argument, "margin and feather must not be negative");
  const std::int64_t h = r.height / 8, w = r.width / 8;
  if (e.mask_override && (e.mask_mode != MaskMode::automatic || e.mask_override->height != h ||
                          e.mask_override->width != w ||
                          e.mask_override->values.size() != static_cast<std::size_t>(h * w)))
    throw Error(ErrorCode::invalid_argument, "a mask override needs the automatic mode and the latent size " +
                                                 std::to_string(h) + "x" + std::to_string(w));
  const int channels = static_cast<int>(model_->unet.in_channels);
  const int k = detection_steps(e, steps);
  std::optional<LatentMask> painted;
  if (e.painted_mask) painted = latent_mask_from_image(*e.painted_mask, h, w);

  EditResult out;
  auto& gen = out.generation;
  gen.request = r;
  gen.latents = {base.latents.front()};
  gen.steps.resize(static_cast<std::size_t>(steps));
  gen.result.scheduler = r.scheduler;
  gen.result.width = r.width;
  gen.result.height = r.height;
  check_stop(stop);

  // The base's records where they are (device) or staged ahead (host); the edited generation's own
  // records within the device budget (edit/cache_store.h). The first sparse steps' records are
  // copied while the text encoder and the detection steps run, after the probabilities attention
  // control reads in the first detection steps.
  const int explicit_steps = default_detection_steps(steps);
  CachePrefetch cache(backend_, base.steps, cache_prefetch_depth_);
  CacheSpill spill(backend_, cache_device_budget_, steps);
  if (e.attention_control)
    for (int i = 0; i < std::min(k, explicit_steps); ++i) cache.prefetch_attention(static_cast<std::size_t>(i));
  cache.prefetch_ahead(static_cast<std::size_t>(k));

  auto t = Clock::now();
  const auto cond = condition(r.prompt, r.negative_prompt, r.cfg_scale);
  gen.result.timings.text_encoder_ms = ms_since(t);
  auto scheduler = make_scheduler(r.scheduler, model_->scheduler);
  scheduler->set_timesteps(r.steps);
  if (start > 0) scheduler->set_begin_index(start);
  std::vector<float> x = base.latents.front();
  // An ancestral sampler's per-step noise: the base generation's, drawn from the same seeded stream in
  // the same order (one draw of the whole latent per step, detection and sparse steps alike), so the
  // steps outside the mask reproduce the cache and a full mask reproduces a dense generation.
  if (scheduler->ancestral())
    scheduler->set_noise_generator(pipeline_detail::seeded_noise(r, static_cast<std::int64_t>(x.size())));

  // Detection: dense steps with the new prompt from the same noise, compared with the cache. The first
  // default_detection_steps run their cross-attention through explicit probabilities, as the base's
  // did, and with attention control the shared tokens' probabilities are the base's.
  t = Clock::now();
  const DeviceTensor columns = e.attention_control ? token_columns(base.request, r) : DeviceTensor();
  // A detection step from the base's latents of the step (the first one, at least) has the base's
  // unconditional item when the negative context is the base's: it runs the conditional item alone
  // and takes the other from the base's record. With the base's prompt too, it is the base's step,
  // taken whole (an edit that changes nothing costs nothing and is the base, bit for bit).
  const bool same_uncond = cond.guidance && reuse_unconditional_ && e.negative_prompt == base.request.negative_prompt &&
                           static_cast<std::int64_t>(context_ids(base.request.prompt, base.request.negative_prompt,
                                                                 base.request.cfg_scale).size()) == cond.context.dim(1);
  const bool same_cond = same_uncond && e.prompt == base.request.prompt;
  const auto prediction_key = unet().prediction_key().index;
  std::vector<std::vector<float>> differences;
  for (int i = 0; i < k; ++i) {
    check_stop(stop);
    SparseStep record(gen.steps[static_cast<std::size_t>(i)]);
    if (i < explicit_steps) {
      const auto& source = e.attention_control ? cache.attention_source(static_cast<std::size_t>(i))
                                               : base.steps[static_cast<std::size_t>(i)];
      const bool control = e.attention_control && !source.cross_attention.empty();
      record.explicit_cross_attention(control ? &source : nullptr, columns);
      out.stats.attention_control_steps += control;
    }
    const auto& base_step = base.steps[static_cast<std::size_t>(i)];
    const bool base_latents = same_uncond && x == base.latents[static_cast<std::size_t>(i)];
    std::vector<float> noise;
    if (base_latents && same_cond && !base_step.has_deltas() && prediction_key < base_step.outputs.size() &&
        !base_step.outputs[prediction_key].empty() && !base_step.outputs[prediction_key].host_resident()) {
      gen.steps[static_cast<std::size_t>(i)] = base_step;
      noise = guided(backend_.download(backend_.nhwc_to_nchw(base_step.outputs[prediction_key])), cond, r);
      ++out.stats.unconditional_reused_steps;
    } else if (base_latents && has_unconditional(base_step)) {
      noise = predict_conditional(*scheduler, start + i, x, cond, r, base_step, record, gen.steps[static_cast<std::size_t>(i)]);
      ++out.stats.unconditional_reused_steps;
    } else {
      noise = predict(*scheduler, start + i, x, cond, r, &record);
    }
    check_finite(noise, i + 1, steps, "the U-Net's prediction");
    x = scheduler->step(noise, start + i, x);
    check_finite(x, i + 1, steps, "the latents after the sampler's step");
    spill.keep(gen.steps[static_cast<std::size_t>(i)]);
    gen.latents.push_back(x);
    differences.push_back(channel_l1(x, base.latents[static_cast<std::size_t>(i) + 1], h * w));
    if (progress) progress({i + 1, steps, ms_since(t0), x, channels, static_cast<int>(h), static_cast<int>(w)});
  }
  out.stats.detect_ms = ms_since(t);
  out.stats.detect_steps = k;

  switch (e.mask_mode) {
    case MaskMode::automatic:
      out.mask = e.mask_override ? *e.mask_override : automatic_mask(differences, h, w, e.margin, e.whole_image_if_global);
      break;
    case MaskMode::painted: out.mask = dilate(*painted, e.margin); break;
    case MaskMode::intersect: out.mask = intersect(automatic_mask(differences, h, w, e.margin, e.whole_image_if_global), *painted); break;
  }
  out.stats.edit_fraction = out.mask.fraction();

  // Sparse steps: outside the mask every spatial layer keeps the cached output, and the latents the
  // cached latents (re-synchronised once at the first sparse step, then kept each step).
  t = Clock::now();
  keep_outside(x, base.latents[static_cast<std::size_t>(k)], out.mask);
  gen.latents.back() = x;
  SparseLevels levels(out.mask, e.dense_levels_up_to.value_or(SparseLevels::default_dense_up_to()));
  const auto memory_before = backend_.device_memory();
  PredictTimes host;
  // The first sparse step is recorded and every sparse step replays the recording (when the backend
  // cannot record one, the step runs op by op and the next one is recorded).
  std::optional<SparseStepReplay> replay;
  if (replay_sparse_steps_ && !e.dense_reference && backend_.can_record())
    replay.emplace(backend_, unet(), levels, cond.context);
  // Sampling on the device (set_sample_on_device) from the first replayed sparse step: the latents, DPM's
  // history, the mask and the cached latents kept outside it live on the device; each step's latents
  // come back through the copy stream and are read (checked, kept, reported) once the next step is
  // queued, so the host is never the device's wait.
  const auto n = static_cast<std::int64_t>(x.size());
  const std::int64_t batch = cond.guidance ? 2 : 1;
  const bool sample_on_device = sample_on_device_ && !e.dense_reference && steps - k > 1;
  // The first step a recording serves and the first sampled on the device: the first sparse step when it
  // is recorded, else the second (the first makes the plans and memos op by op on the host's route,
  // synchronised).
  const int first_on_device = replay && replay_first_step() ? k : k + 1;
  // Uploaded once at the handover: the cached latents each device-sampled step keeps outside the mask,
  // and one not-finite flag word per step, zeroed.
  DeviceTensor x_d, history_d, mask_d, keep_all_d, flags_all_d;
  const auto sampled_step = [&](int i) { return static_cast<std::size_t>(i - first_on_device); };
  struct Pending {
    int step;
    Backend::CopyFence fence;
    DeviceTensor latents, flags;  // host-resident
  };
  std::optional<Pending> pending;
  const auto finish = [&](const Pending& p) {
    backend_.wait_host(p.fence);
    const std::int32_t bits = p.flags.data_as<const std::int32_t>()[0];
    if (bits & 1) throw pipeline_detail::not_finite(p.step + 1, steps, "the U-Net's prediction");
    if (bits & 2) throw pipeline_detail::not_finite(p.step + 1, steps, "the latents after the sampler's step");
    const float* v = p.latents.data_as<const float>();
    x.assign(v, v + n);
    gen.latents.push_back(x);
    if (progress)
      progress({p.step + 1, steps, ms_since(t0), x, channels, static_cast<int>(h), static_cast<int>(w), out.mask.values});
  };
  for (int i = k; i < steps; ++i) {
    check_stop(stop);
    backend_.mark("step");  // Backend::mark: a benchmark's timeline of the steps' parts
    auto t_step = Clock::now();
    const auto index = static_cast<std::size_t>(i);
    // Step i's record; acquiring it queues the copy of step i + 1's (of a spilled cache).
    const auto& acquired = cache.acquire(index, &levels);
    // An edit of an edit: the base's replayed steps kept row deltas over their own base's entries
    // (LayerRecord::deltas); this step reads them merged, and keeps the merged entries it leaves as they are.
    // The merged entries are new memory; the others stay the base's (kept) and the staged ones (read).
    const bool merge = base.steps[index].has_deltas();
    LayerRecord keep_merged, cached_merged;
    if (merge) {
      keep_merged = materialize(backend_, base.steps[index]);
      cached_merged = acquired;
      cached_merged.deltas.clear();
      for (std::size_t d = 0; d < base.steps[index].deltas.size(); ++d)
        if (!base.steps[index].deltas[d].empty()) cached_merged.outputs[d] = keep_merged.outputs[d];
    }
    const LayerRecord& cached = merge ? cached_merged : acquired;
    const LayerRecord& keep_record = merge ? keep_merged : base.steps[index];
    if (sample_on_device && i >= first_on_device) {
      if (x_d.empty()) {  // the latents and the sampler's state as the host's steps left them
        x_d = backend_.upload_f32(x, {channels, h, w});
        // DPM's previous estimate; none yet when the device samples from the edit's first step (a painted
        // mask has no detection steps): the sampler's first step writes it, the next one reads it.
        const auto history = scheduler->history();
        history_d = backend_.upload_f32(history.empty() ? std::vector<float>(x.size(), 0.0f) : history, {channels, h, w});
        mask_d = backend_.upload_f32(out.mask.values, {h, w});
        const auto m = static_cast<std::int64_t>(steps - i);
        std::vector<float> keep_all;
        keep_all.reserve(static_cast<std::size_t>(m * n));
        for (int j = i; j < steps; ++j) {
          const auto& kept = base.latents[static_cast<std::size_t>(j) + 1];
          keep_all.insert(keep_all.end(), kept.begin(), kept.end());
        }
        keep_all_d = backend_.upload_f32(keep_all, {m, channels, h, w});
        flags_all_d = backend_.upload(Tensor::from_i64({m}, std::vector<std::int64_t>(static_cast<std::size_t>(m), 0)));
      }
      const auto input = backend_.sampler_input(x_d, scheduler->input_divisor(start + i), batch);
      backend_.mark("sampler input");
      host.prepare_ms += ms_since(t_step);
      std::optional<DeviceTensor> prediction;
      if (replay && !replay->failed())
        prediction = replay->queue(cached, keep_record, input,
                                   scheduler->model_timesteps()[static_cast<std::size_t>(start + i)], gen.steps[index]);
      if (!prediction) {
        t_step = Clock::now();
        SparseStep step(cached, levels, gen.steps[index], false, &keep_record);
        prediction = predict_queued(*scheduler, start + i, input, cond, &step);
        host.enqueue_ms += ms_since(t_step);
      }
      t_step = Clock::now();
      std::vector<float> noise;
      const auto rule = scheduler->plan_step(start + i, x.size(), &noise);
      const DeviceTensor noise_d = rule.noise ? backend_.upload_f32(noise, {channels, h, w}) : DeviceTensor();
      const auto j = sampled_step(i);
      const DeviceTensor keep_d = keep_all_d.view(keep_all_d.offset() + j * static_cast<std::size_t>(n) * sizeof(float),
                                                  DType::f32, {channels, h, w});
      DeviceTensor flags_d = flags_all_d.view(flags_all_d.offset() + j * sizeof(std::int32_t), DType::i32, {1});
      x_d = backend_.sampler_step(*prediction, r.cfg_scale, rule, x_d, history_d.empty() ? nullptr : &history_d,
                                  noise_d.empty() ? nullptr : &noise_d, &mask_d, &keep_d, flags_d);
      backend_.mark("sampler step");
      // Queued, not waited for: the host's time of the step, its recording included.
      if (i == k) out.stats.first_sparse_step_ms = ms_since(t);
      spill.keep(gen.steps[index]);
      // This step's latents to the host, behind the step; the previous step's read meanwhile.
      Pending now{i, {}, backend_.allocate_host(DType::f32, {channels, h, w}), backend_.allocate_host(DType::i32, {1})};
      const Backend::TensorCopy back[] = {{x_d, now.latents}, {flags_d, now.flags}};
      now.fence = backend_.copy_async(back);
      if (pending) finish(*pending);
      pending = std::move(now);
      out.stats.sparse_after_ms += ms_since(t_step);
      continue;
    }
    std::vector<float> noise;
    bool replayed = false;
    if (replay && !replay->failed() && i >= first_on_device) {
      const auto input = model_input(*scheduler, start + i, x, cond, r);
      const float timestep = scheduler->model_timesteps()[static_cast<std::size_t>(start + i)];
      host.prepare_ms += ms_since(t_step);
      if (const auto prediction = replay->run(cached, keep_record, input, timestep, gen.steps[index])) {
        noise = guided(*prediction, cond, r);
        replayed = true;
      }
      t_step = Clock::now();
    }
    if (!replayed) {
      SparseStep step(cached, levels, gen.steps[index], e.dense_reference, &keep_record);
      host.prepare_ms += ms_since(t_step);
      noise = predict(*scheduler, start + i, x, cond, r, &step, &host);
    }
    t_step = Clock::now();
    check_finite(noise, i + 1, steps, "the U-Net's prediction");
    x = scheduler->step(noise, start + i, x);
    check_finite(x, i + 1, steps, "the latents after the sampler's step");
    if (i == k) out.stats.first_sparse_step_ms = ms_since(t);  // predict() ends with a download: synchronised
    spill.keep(gen.steps[static_cast<std::size_t>(i)]);
    keep_outside(x, base.latents[static_cast<std::size_t>(i) + 1], out.mask);
    gen.latents.push_back(x);
    if (progress)
      progress({i + 1, steps, ms_since(t0), x, channels, static_cast<int>(h), static_cast<int>(w), out.mask.values});
    out.stats.sparse_after_ms += ms_since(t_step);
  }
  if (pending) {
    const auto t_wait = Clock::now();
    finish(*pending);
    host.wait_ms += ms_since(t_wait);
  }
  if (replay) {
    out.stats.replayed_steps = replay->replays();
    if (replay->failed()) out.stats.replay_note = replay->why_not();
    host.enqueue_ms += replay->times().enqueue_ms;
    host.wait_ms += replay->times().wait_ms;
    out.stats.replay_record_ms = replay->times().record_ms;
    out.stats.replay_copied_in_bytes = replay->times().copied_in_bytes;
    out.stats.replay_copied_out_bytes = replay->times().copied_out_bytes;
  }
  out.stats.sparse_prepare_ms = host.prepare_ms;
  out.stats.sparse_enqueue_ms = host.enqueue_ms;
  out.stats.sparse_wait_ms = host.wait_ms;
  out.stats.sparse_ms = ms_since(t);
  if (const auto memory_after = backend_.device_memory(); memory_before && memory_after) {
    out.stats.driver_allocations = memory_after->driver_allocations - memory_before->driver_allocations;
    out.stats.driver_allocation_ms = memory_after->driver_allocation_ms - memory_before->driver_allocation_ms;
    out.stats.cache_flushes = memory_after->cache_flushes - memory_before->cache_flushes;
  }
  out.stats.prefetched_bytes = cache.stats().bytes_staged;
  gen.result.timings.unet_ms = out.stats.detect_ms + out.stats.sparse_ms;
  gen.result.latents = Tensor::from_f32({1, model_->unet.in_channels, h, w}, x);
  check_stop(stop);

  // Decode the region, then composite: outside the feathered region the previous image's bytes.
  t = Clock::now();
  const auto alpha = feathered_alpha(out.mask, e.feather);
  decode_region(base, x, out.mask, e.feather, alpha, gen);
  out.changed_region = alpha_region(alpha, r.width, r.height);
  out.stats.decode_ms = ms_since(t);
  gen.result.timings.vae_ms = out.stats.decode_ms;
  out.stats.total_ms = gen.result.timings.total_ms = ms_since(t0);
  return out;
}

}  // namespace fisedit
