#pragma once
// Text-to-image generation as diffusers' StableDiffusionPipeline does it: the one API the UI, the CLI
// and the benchmark use. A StableDiffusion object owns the loaded model on one backend.
// The requests (GenerationRequest, EditRequest, MaskMode, scheduler_names) are io/request.h, their JSON
// io/request_json.h, AUTOMATIC1111's parameters text io/a1111_parameters.h.
#include "backend/backend.h"
#include "core/tensor.h"
#include "io/image_file.h"
#include "io/model_loader.h"
#include "io/request.h"
#include "models/layers.h"
#include "edit/edit_mask.h"
#include "edit/sparse_step.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <vector>

namespace fisedit {

class Scheduler;
class VaeEncoder;
class UNet;

struct GenerationTimings {
  double text_encoder_ms = 0;
  double unet_ms = 0;  // all steps
  double vae_ms = 0;
  double total_ms = 0;
};

struct GenerationResult {
  Tensor latents;  // final latents, float32 [1, 4, H/8, W/8], before the VAE
  Tensor decoded;  // the VAE's output, float32 [1, 3, H, W], about [-1, 1]
  Image8 image;    // RGB, round(255 * clamp(x / 2 + 0.5, 0, 1))
  std::string scheduler;  // the one used
  int width = 0, height = 0;
  GenerationTimings timings;
};

struct GenerationProgress {
  int step = 0;  // steps done, 1..total
  int total = 0;
  double elapsed_ms = 0;
  // The latents after this step, [channels, height, width] of batch 1, for a preview: they are on the
  // host already, so handing them over costs nothing. Valid during the callback only; empty where
  // the reporter has none.
  std::span<const float> latents{};
  int latent_channels = 0, latent_height = 0, latent_width = 0;
  // An edit's sparse steps: [height, width], non-zero where the latents are recomputed (elsewhere
  // they are the previous image's), so a preview can show the previous image there. Empty for a
  // generation and an edit's detection steps, which change the whole latent.
  std::span<const float> region{};
};
using ProgressCallback = std::function<void(const GenerationProgress&)>;

// A generation with what an edit of it reuses (docs/method.md section 2.1): the latents before every
// step and after the last, and every step's layer record.
struct CachedGeneration {
  GenerationRequest request;                 // resolved
  std::vector<std::vector<float>> latents;   // [steps + 1] x (4 * h * w): x before step i; the final latents last
  // per step run (cross-attention probabilities: default_detection_steps). An image-to-image run
  // (request.init_image) takes steps start_step(request) .. request.steps - 1 only: `latents` and
  // `steps` count from its first step, and latents.front() is the noised encoded image.
  std::vector<LayerRecord> steps;
  std::vector<GroupNormStats> decoder_norms; // the VAE decoder's GroupNorm statistics, for decoding crops
  GenerationResult result;
  std::size_t cache_bytes() const;           // the layer records
  // The same, by where they live: device memory, and host memory beyond the device budget
  // (StableDiffusion::set_cache_device_budget); memory shared by two records counted once.
  std::size_t cache_bytes_device() const;
  std::size_t cache_bytes_host() const;
};

struct EditStats {
  double edit_fraction = 0;  // share of latent pixels in the mask
  int detect_steps = 0;
  int attention_control_steps = 0;  // detection steps run with attention control
  // Detection steps that took the unconditional item from the base's record, computing the conditional
  // one alone (or nothing, with the base's prompt): those from the base's latents, the first one at
  // least, when the negative prompt and its context are the base's.
  int unconditional_reused_steps = 0;
  double detect_ms = 0, sparse_ms = 0, decode_ms = 0, total_ms = 0;
  // The first sparse step alone (part of sparse_ms): it also pays for what a new mask's shapes need
  // first (GEMM plans, memory), which the later steps reuse.
  double first_sparse_step_ms = 0;
  std::size_t prefetched_bytes = 0;  // the base's spilled cache copied back to the device for the edit
  // Where the sparse steps' host time goes (summed over them, parts of sparse_ms): preparing a step
  // (its cached record, its input's upload), enqueueing the U-Net's work, waiting for the device to
  // finish it (and downloading the prediction), and what follows (scheduler, record bookkeeping).
  double sparse_prepare_ms = 0, sparse_enqueue_ms = 0, sparse_wait_ms = 0, sparse_after_ms = 0;
  // Device memory the edit had to ask the driver for (Backend::DeviceMemory): blocks, and emptied caches.
  std::size_t driver_allocations = 0, cache_flushes = 0;
  double driver_allocation_ms = 0;  // the host's time in those driver calls
  double replay_record_ms = 0;      // of sparse_enqueue_ms: recording the sparse step to replay
  // Copies around the replayed steps (SparseStepReplay::Times): cached entries in, the new record out.
  std::size_t replay_copied_in_bytes = 0, replay_copied_out_bytes = 0;
  // Sparse steps run as replays of one recorded step (pipeline/step_replay.h), and why none were
  // when the backend could not record (empty when they were, or replay was off).
  int replayed_steps = 0;
  std::string replay_note;
};

struct EditResult {
  CachedGeneration generation;  // the edited image, itself editable
  LatentMask mask;              // where the U-Net recomputed
  Image8 changed_region;        // image size: white where pixels may differ from the previous image
  EditStats stats;
};

// default_detection_steps(steps): edit/edit_mask.h.

// The sampler that runs a model whose scheduler_config.json names `class_name` (DDIM for the classes
// fisedit has no sampler of): what an empty GenerationRequest::scheduler resolves to.
std::string sampler_for_class(const std::string& class_name);
// The same for a whole config: its use_karras_sigmas picks the Karras variant ("dpmpp2m_karras",
// "euler_karras"), as diffusers runs such a config.
std::string sampler_for_config(const SchedulerConfig& config);

// Whether `next` can be made as an edit of `base`: nothing but the prompts differs (docs/method.md
// section 1).
bool edit_compatible(const GenerationRequest& base, const GenerationRequest& next);
// Whether `next` is made as a prompt edit of the image `base` describes: the prompts differ and nothing
// else does. The one rule the window's Generate/Edit button, EditSession::submit and `fisedit-cli
// edit` follow; both requests as resolved (StableDiffusion::resolve), or at least with the same
// defaults filled in.
bool is_prompt_edit(const GenerationRequest& base, const GenerationRequest& next);

class StableDiffusion {
public:
  // Builds every component on `backend` (which must outlive this object). Throws Error.
  StableDiffusion(std::shared_ptr<const LoadedModel> model, Backend& backend);
  ~StableDiffusion();

  const LoadedModel& model() const { return *model_; }
  Backend& backend() const { return backend_; }

  // Bytes of layer records each cached generation or edit made from now on keeps in device memory;
  // its first steps beyond that go to pinned host memory, and edits prefetch them back a step ahead
  // (edit/cache_store.h). None, the default: no limit. 0: the whole cache in host memory.
  void set_cache_device_budget(std::optional<std::size_t> bytes) { cache_device_budget_ = bytes; }
  std::optional<std::size_t> cache_device_budget() const { return cache_device_budget_; }
  // How many steps of a spilled cache an edit stages ahead (>= 2; each holds a step's record in
  // device memory): deeper lets the copies run further ahead, through the detection steps.
  void set_cache_prefetch_depth(int steps) { cache_prefetch_depth_ = std::max(2, steps); }
  int cache_prefetch_depth() const { return cache_prefetch_depth_; }
  // Whether an edit replays its sparse steps as one recorded launch where the backend can record
  // (pipeline/step_replay.h); off runs every step op by op (the same results bit for bit, slower:
  // docs/benchmarks.md). On by default; FISEDIT_REPLAY_STEPS=0 turns it off for a process.
  void set_replay_sparse_steps(bool on) { replay_sparse_steps_ = on; }
  static bool default_replay_sparse_steps();
  bool replay_sparse_steps() const { return replay_sparse_steps_; }
  // Whether an edit's sparse steps after the first keep the latents on the device and take the
  // sampler's step there (Backend::sampler_step, the same values bit for bit): the host then queues
  // step i + 1 while the device still runs step i, and reads each step's latents one step later.
  // Off: every step's prediction comes to the host, which samples and sends the next input back.
  // Off by default until measured on a GPU; FISEDIT_DEVICE_SAMPLER=1 turns it on for a process.
  void set_sample_on_device(bool on) { sample_on_device_ = on; }
  static bool default_sample_on_device();
  bool sample_on_device() const { return sample_on_device_; }

  // Whether an edit's detection steps from the base's latents take the base's unconditional item
  // (EditStats::unconditional_reused_steps) instead of computing it again: the same values at half a
  // dense step's cost. On by default; FISEDIT_DETECT_REUSE_UNCOND=0 turns it off for a process.
  void set_reuse_unconditional(bool on) { reuse_unconditional_ = on; }
  static bool default_reuse_unconditional();
  bool reuse_unconditional() const { return reuse_unconditional_; }

  // The request with defaults filled in (size, scheduler), validated: throws Error(invalid_argument)
  // with a message naming the bad parameter.
  GenerationRequest resolve(GenerationRequest request) const;

  // Throws Error(cancelled) when `stop` is requested (checked before each step and stage).
  GenerationResult generate(const GenerationRequest& request, const ProgressCallback& progress = {},
                            std::stop_token stop = {});
  // The same, keeping the activation cache for edits.
  CachedGeneration generate_cached(const GenerationRequest& request, const ProgressCallback& progress = {},
                                   std::stop_token stop = {});
  // Re-renders only the region the prompt change affects, reusing `base`'s cache: outside the
  // region the image is `base`'s, byte for byte. Throws Error(invalid_argument) for a bad mask.
  EditResult edit(const CachedGeneration& base, const EditRequest& request, const ProgressCallback& progress = {},
                  std::stop_token stop = {});
  // What a process's first edit pays beyond later ones (plans for the shapes of the detection step and
  // of the sparse steps, the memory pool's blocks, the decode's engines; measured on an H100 at SD2
  // 768: 336 ms against 118 for a later edit with a new mask), paid now by a throwaway edit of `base`
  // (its prompt and one more token, a centred region of 5% of the latent), the result dropped and
  // `base` unchanged. Meant for the idle moment after a generation; returns that edit's stats.
  EditStats prepare_editing(const CachedGeneration& base, std::stop_token stop = {});

  // Text embeddings [1, 77 x chunks, hidden] of a prompt (long prompts in chunks of 75 tokens:
  // text/prompt_weights.h). Throws Error(invalid_argument) for a prompt of more than 8 chunks.
  Tensor encode_prompt(const std::string& text) const;
  // Final latents [1, C, h, w] through the VAE as a generation decodes them.
  Image8 decode_image(const Tensor& latents);
  // An RGB image (multiples of 8 pixels) through the VAE's encoder: the latent distribution's mean
  // times scaling_factor, [1, C, h, w], what decode_image turns back into about the same image (image
  // to image itself samples the distribution, as diffusers: see img2img_latents).
  Tensor encode_image(const Image8& image);
  // The clean latents an image-to-image request starts from, [1, C, h, w], before add_noise: its
  // (resolved) init image's latent distribution sampled with the seed's first draw, times
  // scaling_factor. Throws Error(invalid_argument) for a request without an init image.
  Tensor init_image_latents(const GenerationRequest& request);

private:
  struct Components;
  struct Conditioning {
    DeviceTensor context;  // [B, 77 x chunks, hidden]: [uncond, cond] with guidance, else cond
    bool guidance = false;
  };
  Conditioning condition(const std::string& prompt, const std::string& negative, float cfg_scale) const;
  // The negative prompt's encoding, remembered for the last four negative prompts (Components).
  Tensor encode_negative(const std::string& negative) const;
  // The guided model output for latents x at step i (batch 1, NCHW flattened).
  // Host time of a prediction's parts, added to: the input's preparation and upload, the U-Net's
  // enqueue, the wait for its result.
  struct PredictTimes {
    double prepare_ms = 0, enqueue_ms = 0, wait_ms = 0;
  };
  std::vector<float> predict(const Scheduler& scheduler, int i, const std::vector<float>& x, const Conditioning& cond,
                             const GenerationRequest& r, SparseStep* step, PredictTimes* times = nullptr);
  // predict() for a step whose unconditional item `source` (a record of the same step of the CFG batch,
  // has_unconditional) holds already, computed from the same latents, timestep and negative
  // context: the U-Net runs the conditional item alone into `step`, whose record `out` then takes
  // `source`'s unconditional item (with_unconditional). The same prediction at half the work.
  std::vector<float> predict_conditional(const Scheduler& scheduler, int i, const std::vector<float>& x,
                                         const Conditioning& cond, const GenerationRequest& r, const LayerRecord& source,
                                         SparseStep& step, LayerRecord& out);
  // predict()'s parts: the U-Net's input for step i [B, C, h, w] (the CFG batch), and the guided
  // prediction from the U-Net's output. `conditional_only`: the conditional item alone [1, C, h, w]
  // (predict_conditional).
  Tensor model_input(const Scheduler& scheduler, int i, const std::vector<float>& x, const Conditioning& cond,
                     const GenerationRequest& r, bool conditional_only = false) const;
  std::vector<float> guided(const Tensor& out, const Conditioning& cond, const GenerationRequest& r) const;
  // The U-Net's output [B, C, h, w] for an input already on the device ([B, C, h, w], activation
  // dtype), queued only.
  DeviceTensor predict_queued(const Scheduler& scheduler, int i, const DeviceTensor& input, const Conditioning& cond,
                              SparseStep* step);
  UNet& unet();
  // Latents [C, h, w] through the VAE: fills result.decoded (unless not `keep_decoded`) and
  // result.image (8h x 8w); `tape` keeps or replays the decoder's GroupNorm statistics.
  void decode(const std::vector<float>& latents, std::int64_t h, std::int64_t w, GenerationResult& result,
              NormTape* tape = nullptr, bool keep_decoded = true);
  // The VAE encoder, built on first use (text to image never needs it); throws Error naming what is missing.
  const VaeEncoder& vae_encoder();
  // The encoder's moments of an RGB image, [2C, h, w] flattened: the mean, then the log-variance.
  std::vector<float> encode_moments(const Image8& image);
  // An image-to-image run's clean latents: the distribution sampled with `eps` (the generator's first
  // draw), times scaling_factor, as diffusers' prepare_latents.
  std::vector<float> img2img_latents(const Image8& image, const std::vector<float>& eps);
  // The token ids the conditional item's context is encoded from, chunk after chunk as condition()
  // lays them out (with guidance, as many chunks as the longer of prompt and negative prompt).
  std::vector<std::int64_t> context_ids(const std::string& prompt, const std::string& negative, float cfg_scale) const;
  // I32 [context length]: for each token of r's conditional context, its position in base's on their
  // longest common subsequence, or -1 (attention control's column map).
  DeviceTensor token_columns(const GenerationRequest& base, const GenerationRequest& r) const;
  GenerationResult run(const GenerationRequest& request, const ProgressCallback& progress, std::stop_token stop,
                       CachedGeneration* keep);
  // An edit's image: the edited latents decoded over the mask's region (a crop, with the previous
  // decode's GroupNorm statistics), composited with `alpha` (feathered_alpha) onto the previous image.
  void decode_region(const CachedGeneration& base, const std::vector<float>& latents, const LatentMask& mask,
                     int feather, const std::vector<float>& alpha, CachedGeneration& gen);

  std::shared_ptr<const LoadedModel> model_;
  Backend& backend_;
  std::unique_ptr<Components> c_;
  std::optional<std::size_t> cache_device_budget_;
  int cache_prefetch_depth_ = 2;
  bool replay_sparse_steps_ = default_replay_sparse_steps();
  bool sample_on_device_ = default_sample_on_device();
  bool reuse_unconditional_ = default_reuse_unconditional();
};

}  // namespace fisedit
