#pragma once
// The leaf modules the models are built of, named and shaped like their torch counterparts so a
// model's members read like the diffusers module tree. Each holds its weights on one backend,
// uploaded once at load time; forward calls take the backend that holds them.
#include "backend/backend.h"
#include "io/model_loader.h"

#include <string>
#include <vector>

namespace fisedit {

// The weights of one component (the VAE, the text encoder...), looked up by diffusers name.
class WeightSource {
public:
  // `component` names the weights in errors ("VAE", "text encoder").
  WeightSource(Backend& backend, const WeightMap& weights, std::string component);

  Backend& backend() const { return backend_; }
  bool contains(const std::string& name) const { return weights_.count(name) != 0; }
  // The host tensor `name`, which must have `shape`: Error(not_found) when missing,
  // Error(invalid_argument) when its shape differs from what the config implies.
  const Tensor& host(const std::string& name, const Shape& shape) const;
  // The same, uploaded in the backend's activation dtype.
  DeviceTensor upload(const std::string& name, const Shape& shape) const;

private:
  Backend& backend_;
  const WeightMap& weights_;
  std::string component_;
};

// torch.nn.Linear: weight [out, in], bias [out].
struct Linear {
  DeviceTensor weight, bias;

  static Linear load(const WeightSource& w, const std::string& name, std::int64_t in, std::int64_t out,
                     bool has_bias = true);
  // [..., in] -> [..., out]
  DeviceTensor forward(Backend& b, const DeviceTensor& x, Activation act = Activation::none) const {
    return b.linear(x, weight, bias, act);
  }
  // [..., in] -> [..., out] + residual (shaped like the output), in one pass where the backend fuses it.
  DeviceTensor forward_add(Backend& b, const DeviceTensor& x, const DeviceTensor& residual) const {
    return b.linear_add(x, weight, bias, residual);
  }
};

// torch.nn.Conv2d with a square kernel: weight [out, in, k, k], bias [out].
struct Conv2d {
  ConvWeight weight;
  Conv2dParams params;

  static Conv2d load(const WeightSource& w, const std::string& name, std::int64_t in, std::int64_t out, int kernel,
                     Conv2dParams params);
  // [N, H, W, in] -> [N, Ho, Wo, out]
  DeviceTensor forward(Backend& b, const DeviceTensor& x) const { return b.conv2d(x, weight, params); }
  // + addend [N, Ho, Wo, out] or [N, 1, 1, out], in one pass where the backend fuses it.
  DeviceTensor forward_add(Backend& b, const DeviceTensor& x, const DeviceTensor& addend) const {
    return b.conv2d_add(x, weight, params, addend);
  }
};

// The statistics of a model's GroupNorms in call order: kept by one run, used by another. A crop of an
// image decodes with the statistics of the whole image, so it matches what the whole decode gives.
struct NormTape {
  std::vector<GroupNormStats> stats;
  bool replay = false;  // use `stats` (in order) instead of computing and keeping them
  std::size_t next = 0;
};

// torch.nn.GroupNorm over channels-last activations, SiLU optionally fused.
struct GroupNorm {
  DeviceTensor weight, bias;
  int groups = 32;
  float eps = 1e-5f;

  static GroupNorm load(const WeightSource& w, const std::string& name, std::int64_t channels, int groups, float eps);
  // [N, ..., C] -> [N, ..., C]; with a tape, its statistics are kept or replayed.
  DeviceTensor forward(Backend& b, const DeviceTensor& x, bool silu = false, NormTape* tape = nullptr) const;
};

// torch.nn.LayerNorm over the last dimension.
struct LayerNorm {
  DeviceTensor weight, bias;
  float eps = 1e-5f;

  static LayerNorm load(const WeightSource& w, const std::string& name, std::int64_t channels, float eps);
  // [..., C] -> [..., C]
  DeviceTensor forward(Backend& b, const DeviceTensor& x) const { return b.layer_norm(x, weight, bias, eps); }
};

}  // namespace fisedit
