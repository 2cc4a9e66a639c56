#pragma once
// diffusers' UNet2DConditionModel as Stable Diffusion 1.x and 2.x configure it, on a Backend: the
// noise (or v) predictor that every sampling step runs, once per step on the CFG batch of two.
// Weights carry diffusers names ("down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight");
// the layers mirror diffusers' modules (see models/unet_blocks.h).
#include "backend/backend.h"
#include "core/tensor.h"
#include "io/model_config.h"
#include "io/model_loader.h"
#include "edit/sparse_step.h"

#include <memory>
#include <span>
#include <vector>

namespace fisedit {

// diffusers' get_timestep_embedding (max_period 10000) in float32: one row of `dim` sinusoids per
// timestep, [N] -> [N, dim] row-major; the cos half first when flip_sin_to_cos (as SD configures it).
std::vector<float> timestep_embedding(std::span<const float> timesteps, int dim, bool flip_sin_to_cos, int freq_shift);

class UNet {
public:
  // Checks every weight against `config` and uploads it once. Throws Error naming the first weight
  // that is missing or misshapen, and Error(unsupported) for block types SD 1.x/2.x do not use.
  // `backend` must outlive the UNet; `weights` is only read during construction.
  UNet(Backend& backend, const UNetConfig& config, const WeightMap& weights);
  ~UNet();
  UNet(UNet&&) noexcept;
  UNet& operator=(UNet&&) noexcept;

  const UNetConfig& config() const { return config_; }
  // The record entry (edit/sparse_step.h) of the network's output, conv_out's: what forward returns.
  OutputKey prediction_key() const;

  // sample [N, H, W, in_channels] channels-last; timesteps: one per batch element (any real value,
  // e.g. Euler's 499.5), or one for the whole batch; context [N, L, cross_attention_dim] (the text
  // encoder's hidden states) -> [N, H, W, out_channels].
  // `step` (optional) records the call for later edits, or replays it as an edit: see edit/sparse_step.h.
  DeviceTensor forward(const DeviceTensor& sample, std::span<const float> timesteps, const DeviceTensor& context,
                       SparseStep* step = nullptr);
  // The same in two parts, for a call replayed with new inputs in place (Backend::record): the
  // timestep's sinusoids [N, block_out_channels[0]] on the host (one timestep for the batch, or one
  // each), and the call given them on the device.
  Tensor time_sinusoids(std::span<const float> timesteps, std::int64_t batch) const;
  DeviceTensor forward_embedded(const DeviceTensor& sample, const DeviceTensor& sinusoids, const DeviceTensor& context,
                                SparseStep* step = nullptr);
  // Every resnet's time embedding, time_emb_proj(SiLU(temb)), for sinusoids [N, block_out_channels[0]]:
  // one tensor [N * the resnets' out channels summed], each resnet's [N, out] in turn (down, mid, up).
  // It depends on the timestep alone, so a step can take it ready-made (forward_projected) instead of
  // running ~26 small GEMMs and activations (issue 12).
  DeviceTensor time_projections(const DeviceTensor& sinusoids);
  // The same for host timesteps (as forward takes them), from a memo of the last 256: a generation's
  // steps fill it and an edit's steps at the same timesteps find it. Do not write to the result.
  DeviceTensor time_projections(std::span<const float> timesteps, std::int64_t batch);
  // The shape of time_projections for a batch of `batch`.
  Shape time_projections_shape(std::int64_t batch) const;
  // Every cross-attention's keys and values of `context` [N, L, cross_attention_dim] made now and kept
  // (each holds those of the last context it saw), so that a recorded forward call finds them.
  void prepare_context(const DeviceTensor& context);
  // forward_embedded given the time projections instead of the sinusoids.
  DeviceTensor forward_projected(const DeviceTensor& sample, const DeviceTensor& projections, const DeviceTensor& context,
                                 SparseStep* step = nullptr);
  // The same on host tensors: sample [N, in_channels, H, W] (NCHW, as diffusers takes it), context
  // [N, L, cross_attention_dim] -> float32 [N, out_channels, H, W].
  Tensor forward(const Tensor& sample, std::span<const float> timesteps, const Tensor& context);

private:
  // Each resnet's [N, out] view of a time_projections tensor, by ResnetBlock2D::time_index.
  std::vector<DeviceTensor> time_parts(const DeviceTensor& projections) const;

  struct Layers;
  Backend* backend_;
  UNetConfig config_;
  std::unique_ptr<Layers> layers_;
};

}  // namespace fisedit
