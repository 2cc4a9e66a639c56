// A model's fingerprint (model_fingerprint.h): FNV-1a over tensor names, shapes, sampled bytes, the schedule.
#include "io/model_fingerprint.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string_view>

namespace fisedit {
namespace {

// FNV-1a, 64 bit: simple, and plenty to tell models apart (nothing here defends against collisions
// made on purpose).
class Fnv1a {
public:
  void add(std::span<const std::byte> bytes) {
    for (const std::byte b : bytes) {
      hash_ ^= static_cast<std::uint64_t>(b);
      hash_ *= 0x100000001b3ull;
    }
  }
  void add(std::string_view text) { add(std::as_bytes(std::span(text.data(), text.size()))); }
  void add(std::int64_t value) { add(std::as_bytes(std::span(&value, 1))); }
  std::uint64_t value() const { return hash_; }

private:
  std::uint64_t hash_ = 0xcbf29ce484222325ull;
};

constexpr std::size_t kSampleBytes = 64;

void add_weights(Fnv1a& h, std::string_view component, const WeightMap& weights) {
  h.add(component);
  h.add(static_cast<std::int64_t>(weights.size()));
  for (const auto& [name, tensor] : weights) {  // a std::map: the same order every time
    h.add(name);
    h.add(static_cast<std::int64_t>(tensor.dtype()));
    for (const auto d : tensor.shape()) h.add(d);
    const auto bytes = tensor.bytes();
    const std::size_t n = std::min(kSampleBytes, bytes.size());
    for (const std::size_t at : std::array{std::size_t{0}, (bytes.size() - n) / 2, bytes.size() - n})
      h.add(bytes.subspan(at, n));
  }
}

}  // namespace

std::string model_fingerprint(const LoadedModel& model) {
  Fnv1a h;
  add_weights(h, "unet", model.unet_weights);
  add_weights(h, "vae", model.vae_weights);
  add_weights(h, "text_encoder", model.text_encoder_weights);
  // The noise schedule and prediction type decide the images as much as the weights do.
  const auto& s = model.scheduler;
  h.add(static_cast<std::int64_t>(s.prediction_type));
  h.add(static_cast<std::int64_t>(s.num_train_timesteps));
  h.add(std::to_string(s.beta_start) + "," + std::to_string(s.beta_end) + "," + s.beta_schedule);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h.value()));
  return hex;
}

}  // namespace fisedit
