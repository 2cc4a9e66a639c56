// Text-to-image generation (generation.h): requests, conditioning, the step loop and its cache, decoding.
#include "pipeline/generation.h"
#include "pipeline/step_clock.h"

#include "core/env.h"
#include "core/error.h"
#include "core/torch_random.h"
#include "io/image_read.h"
#include "models/text_encoder.h"
#include "models/unet.h"
#include "models/vae.h"
#include "edit/cache_store.h"
#include "edit/sparse_step.h"
#include "edit/token_alignment.h"
#include "sched/scheduler.h"
#include "text/clip_tokenizer.h"
#include "text/prompt_weights.h"

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <mutex>
#include <sstream>
#include <utility>

namespace fisedit {
namespace {

using pipeline_detail::Clock;
using pipeline_detail::check_finite;
using pipeline_detail::ms_since;

void check_stop(const std::stop_token& stop) { pipeline_detail::check_stop(stop, "generation"); }

std::string format_float(float v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

struct StableDiffusion::Components {
  ClipTokenizer tokenizer;
  TextEncoder text_encoder;
  UNet unet;
  VaeDecoder vae_decoder;
  std::optional<VaeEncoder> vae_encoder{};  // built on the first image-to-image request
  // The negative prompts encoded last (condition()): a session's generations and edits keep theirs,
  // so each edit encodes its new prompt only. Most recent last.
  std::mutex negatives_mutex;
  std::vector<std::pair<std::string, Tensor>> negatives;
};

StableDiffusion::StableDiffusion(std::shared_ptr<const LoadedModel> model, Backend& backend)
    : model_(std::move(model)), backend_(backend) {
  if (!model_->tokenizer_dir)
    throw Error(ErrorCode::not_found, model_->source.string() +
                                          ": no tokenizer: a single-file checkpoint needs a config folder (a diffusers folder of the same model)");
  auto tokenizer = ClipTokenizer::from_folder(*model_->tokenizer_dir);
  check_tokenizer_fits_encoder(tokenizer, model_->text_encoder.vocab_size, model_->text_encoder.max_position_embeddings,
                               model_->text_encoder.source);
  c_.reset(new Components{std::move(tokenizer),
                          TextEncoder(backend, model_->text_encoder, model_->text_encoder_weights),
                          UNet(backend, model_->unet, model_->unet_weights),
                          VaeDecoder(backend, model_->vae, model_->vae_weights), std::nullopt, {}, {}});
  check_weights_intact(*model_);  // a weights file truncated since loading read as zeros: refused
}

StableDiffusion::~StableDiffusion() = default;

GenerationRequest StableDiffusion::resolve(GenerationRequest r) const {
  const int default_size = model_->unet.sample_size * 8;
  if (r.init_image) {
    // diffusers' img2img makes the image's own size, rounded down to multiples of 8.
    const Image8& image = *r.init_image;
    if (image.width <= 0 || image.height <= 0 ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels)
      throw Error(ErrorCode::invalid_argument, "the init image is empty or inconsistent");
    if (r.width == 0) r.width = std::max(8, image.width / 8 * 8);
    if (r.height == 0) r.height = std::max(8, image.height / 8 * 8);
  }
  if (r.width == 0) r.width = default_size;
  if (r.height == 0) r.height = default_size;
  if (r.width < 0 || r.height < 0 || r.width % 8 || r.height % 8)
    throw Error(ErrorCode::invalid_argument, "size " + std::to_string(r.width) + "x" + std::to_string(r.height) +
                                                 " is not a multiple of 8 in both directions");
  if (r.width > kMaxImageSide || r.height > kMaxImageSide)
    throw Error(ErrorCode::invalid_argument, "size " + std::to_string(r.width) + "x" + std::to_string(r.height) +
                                                 " is larger than the " + std::to_string(kMaxImageSide) + "x" +
                                                 std::to_string(kMaxImageSide) + " fisedit makes");
  if (r.steps <= 0 || r.steps > 1000)
    throw Error(ErrorCode::invalid_argument, "steps must be between 1 and 1000 (got " + std::to_string(r.steps) + ")");
  if (!(r.cfg_scale >= 0.0f) || !std::isfinite(r.cfg_scale))
    throw Error(ErrorCode::invalid_argument, "CFG scale must be a non-negative number (got " + format_float(r.cfg_scale) + ")");
  if (r.scheduler.empty()) r.scheduler = sampler_for_config(model_->scheduler);
  const auto& names = scheduler_names();
  if (std::find(names.begin(), names.end(), r.scheduler) == names.end()) {
    std::string valid;
    for (const auto& name : names) valid += (valid.empty() ? "" : ", ") + name;
    throw Error(ErrorCode::invalid_argument, "unknown scheduler '" + r.scheduler + "' (use " + valid + ")");
  }
  if (r.initial_noise) {
    const Shape expected = {1, model_->unet.in_channels, r.height / 8, r.width / 8};
    if (r.initial_noise->shape() != expected)
      throw Error(ErrorCode::invalid_argument, "initial noise has shape " + shape_to_string(r.initial_noise->shape()) +
                                                   ", expected " + shape_to_string(expected));
    for (const float v : r.initial_noise->to_f32())
      if (!std::isfinite(v)) throw Error(ErrorCode::invalid_argument, "initial noise holds NaN or infinity");
  }
  if (r.init_image) {
    if (r.init_image->width != r.width || r.init_image->height != r.height || r.init_image->channels != 3)
      r.init_image = fit_image(*r.init_image, r.width, r.height);
    if (!(r.strength > 0.0f && r.strength <= 1.0f))
      throw Error(ErrorCode::invalid_argument, "strength must be above 0 and at most 1 (got " + format_float(r.strength) + ")");
    if (img2img_start_step(r.steps, r.strength) >= r.steps)
      throw Error(ErrorCode::invalid_argument, "strength " + format_float(r.strength) + " with " + std::to_string(r.steps) +
                                                   " steps runs no step (steps x strength must be at least 1)");
  }
  return r;
}

namespace {

// The CFG batch needs one context length for both prompts. Which of a prompt's own `from` chunks
// each of `to` slots holds: when `to` is a multiple of `from`, its chunks repeated (ComfyUI's way:
// attention over keys repeated m times is the same attention, so a one-chunk negative prompt
// conditions as it did beside a long prompt); otherwise its chunks, then -1 for the empty prompt's
// chunk (AUTOMATIC1111's padding).
std::vector<int> chunk_slots(std::size_t from, std::size_t to) {
  std::vector<int> slots(to, -1);
  for (std::size_t i = 0; i < to; ++i)
    if (to % from == 0 || i < from) slots[i] = static_cast<int>(i % from);
  return slots;
}

}  // namespace

// Each chunk of the prompt (text/prompt_weights.h: 75 tokens, or up to a BREAK) is encoded on its
// own, its emphasis ("(word:1.2)") weighing its output rows, and the chunks are concatenated.
Tensor StableDiffusion::encode_prompt(const std::string& text) const {
  const auto chunks = encoder_chunks(c_->tokenizer, text);
  const auto n = static_cast<std::int64_t>(chunks.size());
  std::vector<std::int64_t> ids;
  for (const auto& chunk : chunks) ids.insert(ids.end(), chunk.ids.begin(), chunk.ids.end());
  auto hidden = c_->text_encoder.encode(Tensor::from_i64({n, ClipTokenizer::kMaxLength}, ids));
  const bool weighted = std::any_of(chunks.begin(), chunks.end(), [](const auto& c) { return c.weighted(); });
  if (n == 1 && !weighted) return hidden;
  auto values = hidden.to_f32();
  const std::size_t per_chunk = values.size() / chunks.size();
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (!chunks[i].weighted()) continue;
    const auto first = values.begin() + static_cast<std::ptrdiff_t>(i * per_chunk);
    std::vector<float> rows(first, first + static_cast<std::ptrdiff_t>(per_chunk));
    apply_token_weights(rows, chunks[i].weights);
    std::copy(rows.begin(), rows.end(), first);
  }
  return Tensor::from_f32({1, n * ClipTokenizer::kMaxLength, hidden.dim(2)}, values);
}

std::vector<std::int64_t> StableDiffusion::context_ids(const std::string& prompt, const std::string& negative,
                                                       float cfg_scale) const {
  const auto chunks = encoder_chunks(c_->tokenizer, prompt);
  const std::size_t slots =
      cfg_scale > 1.0f ? std::max(chunks.size(), encoder_chunks(c_->tokenizer, negative).size()) : chunks.size();
  std::vector<std::int64_t> ids;
  for (const int slot : chunk_slots(chunks.size(), slots)) {
    const auto& chunk = slot >= 0 ? chunks[static_cast<std::size_t>(slot)] : encoder_chunks(c_->tokenizer, "")[0];
    ids.insert(ids.end(), chunk.ids.begin(), chunk.ids.end());
  }
  return ids;
}

DeviceTensor StableDiffusion::token_columns(const GenerationRequest& base, const GenerationRequest& r) const {
  const auto old_ids = context_ids(base.prompt, base.negative_prompt, base.cfg_scale);
  const auto new_ids = context_ids(r.prompt, r.negative_prompt, r.cfg_scale);
  const auto map = token_alignment(old_ids, new_ids);
  return backend_.upload(Tensor::from_i64({static_cast<std::int64_t>(map.size())}, std::vector<std::int64_t>(map.begin(), map.end())));
}

Tensor StableDiffusion::encode_negative(const std::string& negative) const {
  {
    const std::lock_guard lock(c_->negatives_mutex);
    auto& memo = c_->negatives;
    const auto found = std::find_if(memo.begin(), memo.end(), [&](const auto& entry) { return entry.first == negative; });
    if (found != memo.end()) {
      std::rotate(found, found + 1, memo.end());  // most recent last
      return memo.back().second;
    }
  }
  Tensor encoded = encode_prompt(negative);
  const std::lock_guard lock(c_->negatives_mutex);
  constexpr std::size_t kNegatives = 4;
  if (c_->negatives.size() == kNegatives) c_->negatives.erase(c_->negatives.begin());
  c_->negatives.emplace_back(negative, encoded);
  return encoded;
}

StableDiffusion::Conditioning StableDiffusion::condition(const std::string& prompt, const std::string& negative,
                                                        float cfg_scale) const {
  // [uncond, cond] with guidance, as diffusers orders the CFG batch.
  const bool guidance = cfg_scale > 1.0f;
  const Tensor cond = encode_prompt(prompt);
  if (!guidance) return {backend_.upload(cond), false};
  const Tensor uncond = encode_negative(negative);
  const std::int64_t hidden = cond.dim(2), chunk = ClipTokenizer::kMaxLength;
  const std::size_t a = static_cast<std::size_t>(uncond.dim(1) / chunk), b = static_cast<std::size_t>(cond.dim(1) / chunk);
  const std::size_t slots = std::max(a, b);
  std::vector<float> empty;  // the empty prompt's chunk, for AUTOMATIC1111's padding
  std::vector<float> context;
  context.reserve(2 * slots * static_cast<std::size_t>(chunk * hidden));
  for (const Tensor* side : std::initializer_list<const Tensor*>{&uncond, &cond}) {
    const auto values = side->to_f32();
    const std::size_t per_chunk = static_cast<std::size_t>(chunk * hidden);
    for (const int slot : chunk_slots(values.size() / per_chunk, slots)) {
      if (slot < 0 && empty.empty()) empty = encode_prompt("").to_f32();
      const float* from = slot >= 0 ? values.data() + static_cast<std::size_t>(slot) * per_chunk : empty.data();
      context.insert(context.end(), from, from + per_chunk);
    }
  }
  return {backend_.upload(Tensor::from_f32({2, static_cast<std::int64_t>(slots) * chunk, hidden}, context)), true};
}

UNet& StableDiffusion::unet() { return c_->unet; }

bool StableDiffusion::default_sample_on_device() {
  // On since the GPU suite passed with it and it measured faster (H100, 2026-12-07, docs/benchmarks.md):
  // FISEDIT_DEVICE_SAMPLER=0 turns it off (docs/design-notes.md, "Sampling on the device").
  static const bool on = env_flag("FISEDIT_DEVICE_SAMPLER", true);
  return on;
}

DeviceTensor StableDiffusion::predict_queued(const Scheduler& scheduler, int i, const DeviceTensor& input,
                                             const Conditioning& cond, SparseStep* step) {
  const float timestep = scheduler.model_timesteps()[static_cast<std::size_t>(i)];
  return backend_.nhwc_to_nchw(c_->unet.forward(backend_.nchw_to_nhwc(input), std::span(&timestep, 1), cond.context, step));
}

bool StableDiffusion::default_replay_sparse_steps() {
  static const bool on = env_flag("FISEDIT_REPLAY_STEPS", true);
  return on;
}

Tensor StableDiffusion::model_input(const Scheduler& scheduler, int i, const std::vector<float>& x,
                                    const Conditioning& cond, const GenerationRequest& r, bool conditional_only) const {
  const std::int64_t c = model_->unet.in_channels, h = r.height / 8, w = r.width / 8;
  const std::int64_t batch = cond.guidance && !conditional_only ? 2 : 1;
  const auto input = scheduler.scale_model_input(x, i);
  std::vector<float> batch_input = input;
  if (batch == 2) batch_input.insert(batch_input.end(), input.begin(), input.end());
  return Tensor::from_f32({batch, c, h, w}, batch_input);
}

std::vector<float> StableDiffusion::guided(const Tensor& out, const Conditioning& cond, const GenerationRequest& r) const {
  const std::int64_t n = model_->unet.in_channels * (r.height / 8) * (r.width / 8);
  const auto pred = out.to_f32();
  std::vector<float> noise(pred.begin(), pred.begin() + n);
  if (cond.guidance)  // uncond + scale * (cond - uncond)
    for (std::int64_t j = 0; j < n; ++j) noise[j] = pred[j] + r.cfg_scale * (pred[n + j] - pred[j]);
  return noise;
}

std::vector<float> StableDiffusion::predict(const Scheduler& scheduler, int i, const std::vector<float>& x,
                                            const Conditioning& cond, const GenerationRequest& r, SparseStep* step,
                                            PredictTimes* times) {
  auto t0 = Clock::now();
  auto sample = backend_.nchw_to_nhwc(backend_.upload(model_input(scheduler, i, x, cond, r)));
  const float timestep = scheduler.model_timesteps()[static_cast<std::size_t>(i)];
  if (times) {
    times->prepare_ms += ms_since(t0);
    t0 = Clock::now();
  }
  const auto queued = backend_.nhwc_to_nchw(c_->unet.forward(sample, std::span(&timestep, 1), cond.context, step));
  if (times) {
    times->enqueue_ms += ms_since(t0);
    t0 = Clock::now();
  }
  const auto out = backend_.download(queued);
  if (times) times->wait_ms += ms_since(t0);
  return guided(out, cond, r);
}

std::vector<float> StableDiffusion::predict_conditional(const Scheduler& scheduler, int i, const std::vector<float>& x,
                                                        const Conditioning& cond, const GenerationRequest& r,
                                                        const LayerRecord& source, SparseStep& step, LayerRecord& out) {
  const auto sample = backend_.nchw_to_nhwc(backend_.upload(model_input(scheduler, i, x, cond, r, true)));
  const float timestep = scheduler.model_timesteps()[static_cast<std::size_t>(i)];
  c_->unet.forward(sample, std::span(&timestep, 1), cond.context.slice_rows(1, 2), &step);
  out = with_unconditional(backend_, source, out);
  return guided(backend_.download(backend_.nhwc_to_nchw(out.outputs.at(c_->unet.prediction_key().index))), cond, r);
}

void StableDiffusion::decode(const std::vector<float>& latents, std::int64_t h, std::int64_t w, GenerationResult& result,
                             NormTape* tape, bool keep_decoded) {
  const std::int64_t c = model_->unet.in_channels;
  std::vector<float> z = latents;
  for (auto& v : z) v /= model_->vae.scaling_factor;
  const auto z_d = backend_.nchw_to_nhwc(backend_.upload(Tensor::from_f32({1, c, h, w}, z)));
  const auto decoded_d = c_->vae_decoder.decode(z_d, tape);
  if (keep_decoded) result.decoded = backend_.download(backend_.nhwc_to_nchw(decoded_d));
  // NHWC is the 8-bit image's own order.
  auto pixels = backend_.download_rgb8(decoded_d);
  if (!pixels)
    throw Error(ErrorCode::invalid_argument, "the VAE decoded NaN or infinite pixels from the final latents (the model's "
                                             "weights or configs, or the CFG scale, do not work together)");
  result.image = Image8{static_cast<int>(8 * w), static_cast<int>(8 * h), 3, std::move(*pixels)};
}

const VaeEncoder& StableDiffusion::vae_encoder() {
  if (!c_->vae_encoder) {
    try {
      c_->vae_encoder.emplace(backend_, model_->vae, model_->vae_weights);
    } catch (const Error& e) {
      throw Error(e.code(), std::string("image to image needs the VAE's encoder: ") + e.what());
    }
  }
  return *c_->vae_encoder;
}

std::vector<float> StableDiffusion::encode_moments(const Image8& image) {
  if (image.channels != 3 || image.width % 8 || image.height % 8 || image.width <= 0 || image.height <= 0 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3)
    throw Error(ErrorCode::invalid_argument, "the VAE encodes RGB images of multiples of 8 pixels (got " +
                                                 std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                                                 std::to_string(image.channels) + ")");
  const auto& encoder = vae_encoder();
  // diffusers' VaeImageProcessor: x / 255 then 2x - 1, float32, NHWC here (channels-last activations).
  std::vector<float> pixels(image.pixels.size());
  for (std::size_t i = 0; i < pixels.size(); ++i) {
    const float unit = static_cast<float>(image.pixels[i]) / 255.0f;
    pixels[i] = 2.0f * unit - 1.0f;
  }
  const auto x = backend_.upload(Tensor::from_f32({1, image.height, image.width, 3}, pixels));
  return backend_.download(backend_.nhwc_to_nchw(encoder.moments(x))).to_f32();
}

Tensor StableDiffusion::encode_image(const Image8& image) {
  auto moments = encode_moments(image);
  const std::int64_t c = model_->unet.in_channels, h = image.height / 8, w = image.width / 8;
  moments.resize(static_cast<std::size_t>(c * h * w));  // the mean: the first half of the channels
  for (auto& v : moments) v = model_->vae.scaling_factor * v;
  return Tensor::from_f32({1, c, h, w}, moments);
}

Tensor StableDiffusion::init_image_latents(const GenerationRequest& request) {
  const GenerationRequest r = resolve(request);
  if (!r.init_image) throw Error(ErrorCode::invalid_argument, "the request has no init image");
  const std::int64_t c = model_->unet.in_channels, h = r.height / 8, w = r.width / 8;
  std::vector<float> sample;
  pipeline_detail::seeded_noise(r, c * h * w, nullptr, &sample);
  return Tensor::from_f32({1, c, h, w}, img2img_latents(*r.init_image, sample));
}

Image8 StableDiffusion::decode_image(const Tensor& latents) {
  if (latents.rank() != 4 || latents.dim(0) != 1 || latents.dim(1) != model_->unet.in_channels)
    throw Error(ErrorCode::invalid_argument, "latents " + shape_to_string(latents.shape()) + " are not [1, " +
                                                 std::to_string(model_->unet.in_channels) + ", h, w]");
  GenerationResult result;
  decode(latents.to_f32(), latents.dim(2), latents.dim(3), result);
  return result.image;
}

GenerationResult StableDiffusion::generate(const GenerationRequest& request, const ProgressCallback& progress,
                                           std::stop_token stop) {
  return run(request, progress, stop, nullptr);
}

CachedGeneration StableDiffusion::generate_cached(const GenerationRequest& request, const ProgressCallback& progress,
                                                  std::stop_token stop) {
  CachedGeneration cache;
  cache.result = run(request, progress, stop, &cache);
  return cache;
}

GenerationResult StableDiffusion::run(const GenerationRequest& request, const ProgressCallback& progress,
                                      std::stop_token stop, CachedGeneration* keep) {
  const auto t0 = Clock::now();
  const GenerationRequest r = resolve(request);
  GenerationResult result;
  result.scheduler = r.scheduler;
  result.width = r.width;
  result.height = r.height;
  check_stop(stop);

  auto t = Clock::now();
  const auto cond = condition(r.prompt, r.negative_prompt, r.cfg_scale);
  result.timings.text_encoder_ms = ms_since(t);
  check_stop(stop);

  auto scheduler = make_scheduler(r.scheduler, model_->scheduler);
  scheduler->set_timesteps(r.steps);
  const std::int64_t n = model_->unet.in_channels * (r.height / 8) * (r.width / 8);
  std::vector<float> latents, latent_sample;
  scheduler->set_noise_generator(pipeline_detail::seeded_noise(r, n, &latents, &latent_sample));
  if (r.initial_noise) latents = r.initial_noise->to_f32();
  // Image to image starts at step `start` from the encoded image noised to that step's level.
  const int start = start_step(r);
  const int run_steps = scheduler->num_steps() - start;
  if (r.init_image) {
    t = Clock::now();
    const auto x0 = img2img_latents(*r.init_image, latent_sample);
    result.timings.vae_ms += ms_since(t);
    scheduler->set_begin_index(start);
    latents = scheduler->add_noise(x0, latents, start);
  } else {
    for (auto& v : latents) v *= scheduler->init_noise_sigma();
  }
  if (keep) {
    keep->request = r;
    keep->latents = {latents};
    keep->steps.resize(static_cast<std::size_t>(run_steps));
  }

  t = Clock::now();
  CacheSpill spill(backend_, cache_device_budget_, run_steps);
  for (int j = 0; j < run_steps; ++j) {
    const int i = start + j;  // the scheduler's step; j indexes the run and its cache
    check_stop(stop);
    std::optional<SparseStep> record;
    if (keep) record.emplace(keep->steps[static_cast<std::size_t>(j)]);
    if (record && j < default_detection_steps(run_steps)) record->explicit_cross_attention();  // for attention control
    const auto noise = predict(*scheduler, i, latents, cond, r, record ? &*record : nullptr);
    check_finite(noise, j + 1, run_steps, "the U-Net's prediction");
    latents = scheduler->step(noise, i, latents);
    check_finite(latents, j + 1, run_steps, "the latents after the sampler's step");
    if (keep) {
      spill.keep(keep->steps[static_cast<std::size_t>(j)]);
      keep->latents.push_back(latents);
    }
    if (progress)
      progress({j + 1, run_steps, ms_since(t0), latents, static_cast<int>(model_->unet.in_channels),
                r.height / 8, r.width / 8});
  }
  result.timings.unet_ms = ms_since(t);
  result.latents = Tensor::from_f32({1, model_->unet.in_channels, r.height / 8, r.width / 8}, latents);
  check_stop(stop);

  t = Clock::now();
  NormTape tape;
  decode(latents, r.height / 8, r.width / 8, result, keep ? &tape : nullptr);
  if (keep) keep->decoder_norms = std::move(tape.stats);
  result.timings.vae_ms += ms_since(t);
  result.timings.total_ms = ms_since(t0);
  return result;
}

// diffusers' retrieve_latents(vae.encode(image), generator) * scaling_factor: the latent distribution
// sampled, mean + exp(0.5 clamp(logvar, -30, 20)) * eps, with eps the generator's first draw.
std::vector<float> StableDiffusion::img2img_latents(const Image8& image, const std::vector<float>& eps) {
  const auto moments = encode_moments(image);
  const std::size_t n = moments.size() / 2;
  if (eps.size() != n)
    throw Error(ErrorCode::invalid_argument, "image to image: the latent sample has " + std::to_string(eps.size()) +
                                                 " values for " + std::to_string(n) + " latents");
  std::vector<float> x(n);
  for (std::size_t k = 0; k < n; ++k) {
    const float logvar = std::clamp(moments[n + k], -30.0f, 20.0f);
    const float std_dev = std::exp(0.5f * logvar);
    const float sample = moments[k] + std_dev * eps[k];
    x[k] = sample * model_->vae.scaling_factor;
  }
  return x;
}

// The diffusers class a model's scheduler_config.json names -> our sampler. Samplers we do not
// implement (PNDM, the SD1.x default; LMS; ...) fall back to DDIM, which every SD model supports
// (SchedulerConfig refuses class names that are not diffusers schedulers).
std::string sampler_for_class(const std::string& class_name) {
  if (class_name == "DPMSolverMultistepScheduler") return "dpmpp2m";
  if (class_name == "EulerDiscreteScheduler") return "euler";
  if (class_name == "EulerAncestralDiscreteScheduler") return "euler_a";
  return "ddim";
}

std::string sampler_for_config(const SchedulerConfig& config) {
  std::string name = sampler_for_class(config.class_name);
  const auto karras = config.raw.find("use_karras_sigmas");
  if ((name == "dpmpp2m" || name == "euler") && karras != config.raw.end() && karras->is_boolean() && karras->get<bool>())
    name += "_karras";
  return name;
}


std::size_t CachedGeneration::cache_bytes() const {
  std::size_t n = 0;
  for (const auto& s : steps) n += s.bytes();
  return n;
}

std::size_t CachedGeneration::cache_bytes_device() const {
  CacheByteCounter counter;
  counter.add(steps);
  return counter.bytes().device;
}

std::size_t CachedGeneration::cache_bytes_host() const {
  CacheByteCounter counter;
  counter.add(steps);
  return counter.bytes().host;
}

bool edit_compatible(const GenerationRequest& a, const GenerationRequest& b) {
  const bool same_start = a.init_image.has_value() == b.init_image.has_value() &&
                          (!a.init_image || (a.strength == b.strength && a.init_image->width == b.init_image->width &&
                                             a.init_image->height == b.init_image->height &&
                                             a.init_image->channels == b.init_image->channels &&
                                             a.init_image->pixels == b.init_image->pixels));
  return a.seed == b.seed && a.steps == b.steps && a.cfg_scale == b.cfg_scale && a.scheduler == b.scheduler &&
         a.width == b.width && a.height == b.height && !a.initial_noise && !b.initial_noise && same_start;
}

bool is_prompt_edit(const GenerationRequest& base, const GenerationRequest& next) {
  const bool prompts_differ = base.prompt != next.prompt || base.negative_prompt != next.negative_prompt;
  return prompts_differ && edit_compatible(base, next);
}

}  // namespace fisedit
