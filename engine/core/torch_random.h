#pragma once
// Noise that reproduces PyTorch's CPU generator, so that a seed gives the same initial latents here as
// `torch.randn(shape, generator=torch.Generator().manual_seed(seed))` gives in diffusers (float32).
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace fisedit {

class TorchGenerator {
public:
  // Like torch, only the low 32 bits of the seed reach the Mersenne Twister.
  explicit TorchGenerator(std::uint64_t seed);

  // The next `numel` standard normal floats; successive calls continue the stream as successive
  // torch.randn calls on one generator do.
  std::vector<float> randn(std::int64_t numel);

private:
  float uniform_float();
  double uniform_double();
  double normal_double();

  std::mt19937 engine_;
  std::optional<double> cached_normal_;
};

}  // namespace fisedit
