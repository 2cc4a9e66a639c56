// The CLIP / OpenCLIP text encoder (text_encoder.h): embeddings, pre-LN encoder layers, final LayerNorm.
#include "models/text_encoder.h"

#include "core/error.h"

#include <cmath>

namespace fisedit {
namespace {

Activation activation_named(const std::string& name) {
  if (name == "quick_gelu") return Activation::quick_gelu;
  if (name == "gelu") return Activation::gelu;
  throw Error(ErrorCode::unsupported, "text encoder: hidden_act '" + name +
                                          "' is not supported (SD text encoders use quick_gelu or gelu)");
}

}  // namespace

TextEncoder::TextEncoder(Backend& backend, const TextEncoderConfig& config, const WeightMap& weights)
    : backend_(backend), config_(config), act_(activation_named(config.hidden_act)) {
  const std::int64_t hidden = config.hidden_size, inner = config.intermediate_size;
  if (config.num_attention_heads < 1 || hidden % config.num_attention_heads != 0)
    throw Error(ErrorCode::invalid_argument, "text encoder: hidden_size " + std::to_string(hidden) +
                                                 " does not split into " +
                                                 std::to_string(config.num_attention_heads) + " heads");
  const WeightSource w(backend, weights, "text encoder");
  token_embedding_ = w.upload("text_model.embeddings.token_embedding.weight", {config.vocab_size, hidden});
  position_embedding_ =
      w.upload("text_model.embeddings.position_embedding.weight", {config.max_position_embeddings, hidden});
  for (int i = 0; i < config.num_hidden_layers; ++i) {
    const auto p = "text_model.encoder.layers." + std::to_string(i) + ".";
    layers_.push_back({
        LayerNorm::load(w, p + "layer_norm1", hidden, config.layer_norm_eps),
        Linear::load(w, p + "self_attn.q_proj", hidden, hidden),
        Linear::load(w, p + "self_attn.k_proj", hidden, hidden),
        Linear::load(w, p + "self_attn.v_proj", hidden, hidden),
        Linear::load(w, p + "self_attn.out_proj", hidden, hidden),
        LayerNorm::load(w, p + "layer_norm2", hidden, config.layer_norm_eps),
        Linear::load(w, p + "mlp.fc1", hidden, inner),
        Linear::load(w, p + "mlp.fc2", inner, hidden),
    });
  }
  final_layer_norm_ = LayerNorm::load(w, "text_model.final_layer_norm", hidden, config.layer_norm_eps);
}

DeviceTensor TextEncoder::layer_forward(const EncoderLayer& layer, const DeviceTensor& x) const {
  auto& b = backend_;
  const int heads = config_.num_attention_heads;
  const AttentionParams attention{
      .heads = heads,
      .scale = 1.0f / std::sqrt(static_cast<float>(config_.hidden_size / heads)),
      .causal = true,
  };
  // [B, L, hidden] -> [B, L, hidden]
  const auto h = layer.layer_norm1.forward(b, x);
  const auto a = b.attention(layer.q_proj.forward(b, h), layer.k_proj.forward(b, h), layer.v_proj.forward(b, h),
                             attention);
  const auto x1 = layer.out_proj.forward_add(b, a, x);
  // [B, L, hidden] -> [B, L, intermediate] -> [B, L, hidden]
  const auto m = layer.fc1.forward(b, layer.layer_norm2.forward(b, x1), act_);
  return layer.fc2.forward_add(b, m, x1);
}

DeviceTensor TextEncoder::forward(const DeviceTensor& input_ids) const {
  if (input_ids.rank() != 2 || input_ids.dim(1) < 1 || input_ids.dim(1) > config_.max_position_embeddings)
    throw Error(ErrorCode::invalid_argument, "text encoder: input ids " + shape_to_string(input_ids.shape()) +
                                                 " are not [batch, length <= " +
                                                 std::to_string(config_.max_position_embeddings) + "]");
  // [B, L] -> [B, L, hidden]: token embeddings plus the first L position embeddings.
  auto x = backend_.add(backend_.embedding(token_embedding_, input_ids),
                        position_embedding_.slice_rows(0, input_ids.dim(1)));
  for (const auto& layer : layers_) x = layer_forward(layer, x);
  return final_layer_norm_.forward(backend_, x);
}

Tensor TextEncoder::encode(const Tensor& input_ids) const {
  if (dtype_is_float(input_ids.dtype()))
    throw Error(ErrorCode::invalid_argument, "text encoder: input ids must be integers");
  return backend_.download(forward(backend_.upload(input_ids)));
}

}  // namespace fisedit
