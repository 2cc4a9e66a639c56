#pragma once
// CLIPTextModel as transformers computes it, for SD1.x's CLIP ViT-L (quick_gelu) and SD2.x's OpenCLIP
// ViT-H (gelu, penultimate layer: its config already counts one layer fewer). Pre-LN encoder layers
// with causal self-attention, then the final layer norm: the output is `last_hidden_state`, which
// is what diffusers' pipelines condition the U-Net on. No padding mask: SD pipelines pass none, so
// padding tokens attend (causally) like any other, as in the reference.
#include "backend/backend.h"
#include "io/model_config.h"
#include "io/model_loader.h"
#include "models/layers.h"

#include <vector>

namespace fisedit {

class TextEncoder {
public:
  // Weights with transformers-4 names ("text_model.encoder.layers.0.self_attn.q_proj.weight");
  // Error(not_found) names a missing weight, Error(unsupported) an activation we do not implement.
  TextEncoder(Backend& backend, const TextEncoderConfig& config, const WeightMap& weights);

  // input_ids I32 [B, L], L <= max_position_embeddings -> last_hidden_state [B, L, hidden]
  DeviceTensor forward(const DeviceTensor& input_ids) const;
  // Host convenience: integer ids [B, L] -> float32 [B, L, hidden].
  Tensor encode(const Tensor& input_ids) const;

  const TextEncoderConfig& config() const { return config_; }

private:
  struct EncoderLayer {
    LayerNorm layer_norm1;
    Linear q_proj, k_proj, v_proj, out_proj;  // self_attn.*
    LayerNorm layer_norm2;
    Linear fc1, fc2;  // mlp.*
  };
  // [B, L, hidden] -> [B, L, hidden]
  DeviceTensor layer_forward(const EncoderLayer& layer, const DeviceTensor& x) const;

  Backend& backend_;
  TextEncoderConfig config_;
  Activation act_;
  DeviceTensor token_embedding_;     // [vocab, hidden]
  DeviceTensor position_embedding_;  // [max_positions, hidden]
  std::vector<EncoderLayer> layers_;
  LayerNorm final_layer_norm_;
};

}  // namespace fisedit
