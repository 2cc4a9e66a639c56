// The leaf modules (layers.h): weights looked up with their shapes checked, and GroupNorm's statistics tape.
#include "models/layers.h"

#include "core/error.h"

namespace fisedit {

WeightSource::WeightSource(Backend& backend, const WeightMap& weights, std::string component)
    : backend_(backend), weights_(weights), component_(std::move(component)) {}

const Tensor& WeightSource::host(const std::string& name, const Shape& shape) const {
  const auto it = weights_.find(name);
  if (it == weights_.end())
    throw Error(ErrorCode::not_found, component_ + " weight '" + name +
                                          "' is missing: the model file is incomplete or not of this architecture");
  if (it->second.shape() != shape)
    throw Error(ErrorCode::invalid_argument, component_ + " weight '" + name + "' has shape " +
                                                 shape_to_string(it->second.shape()) + " but the config implies " +
                                                 shape_to_string(shape));
  return it->second;
}

DeviceTensor WeightSource::upload(const std::string& name, const Shape& shape) const {
  return backend_.upload(host(name, shape));
}

Linear Linear::load(const WeightSource& w, const std::string& name, std::int64_t in, std::int64_t out, bool has_bias) {
  Linear l;
  l.weight = w.upload(name + ".weight", {out, in});
  if (has_bias) l.bias = w.upload(name + ".bias", {out});
  return l;
}

Conv2d Conv2d::load(const WeightSource& w, const std::string& name, std::int64_t in, std::int64_t out, int kernel,
                    Conv2dParams params) {
  Conv2d c;
  c.weight = w.backend().prepare_conv_weight(w.host(name + ".weight", {out, in, kernel, kernel}),
                                             w.host(name + ".bias", {out}));
  c.params = params;
  return c;
}

GroupNorm GroupNorm::load(const WeightSource& w, const std::string& name, std::int64_t channels, int groups, float eps) {
  if (groups < 1 || channels % groups != 0)
    throw Error(ErrorCode::invalid_argument, "'" + name + "': " + std::to_string(channels) +
                                                 " channels do not split into " + std::to_string(groups) + " groups");
  return {w.upload(name + ".weight", {channels}), w.upload(name + ".bias", {channels}), groups, eps};
}

LayerNorm LayerNorm::load(const WeightSource& w, const std::string& name, std::int64_t channels, float eps) {
  return {w.upload(name + ".weight", {channels}), w.upload(name + ".bias", {channels}), eps};
}

DeviceTensor GroupNorm::forward(Backend& b, const DeviceTensor& x, bool silu, NormTape* tape) const {
  if (!tape) return b.group_norm(x, weight, bias, groups, eps, silu);
  if (tape->replay) {
    if (tape->next >= tape->stats.size())
      throw Error(ErrorCode::invalid_argument, "more GroupNorms than the recorded statistics cover");
    return b.group_norm(x, weight, bias, groups, eps, silu, nullptr, &tape->stats[tape->next++]);
  }
  GroupNormStats stats;
  auto y = b.group_norm(x, weight, bias, groups, eps, silu, &stats);
  tape->stats.push_back(std::move(stats));
  return y;
}

}  // namespace fisedit
