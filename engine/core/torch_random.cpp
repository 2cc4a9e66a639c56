// Noise equal to torch.randn's on the CPU (torch_random.h): the generator and both of torch's normal paths.
// torch's CPU normal sampling takes two paths: float tensors of at least 16 elements are filled with
// uniform floats and Box-Muller transformed in blocks of 16 (the sines in the upper half, the cosines in
// the lower); smaller tensors draw each element from a double-precision Box-Muller. Both must be copied
// bit for bit, down to which uniform feeds which half, or the noise differs from the first element on.
#include "core/torch_random.h"

#include "core/error.h"

#include <cmath>
#include <numbers>
#include <string>

namespace fisedit {
namespace {

constexpr std::int64_t kBlock = 16;

// Box-Muller over one block, in float as torch computes it: u1 comes from the lower half (as 1 - u, so
// the log never sees zero), u2 from the upper half.
void normal_block(float* d) {
  for (int j = 0; j < kBlock / 2; ++j) {
    const float u1 = 1.0f - d[j];
    const float u2 = d[j + kBlock / 2];
    const float radius = std::sqrt(-2.0f * std::log(u1));
    const float theta = 2.0f * std::numbers::pi_v<float> * u2;
    d[j] = radius * std::cos(theta);
    d[j + kBlock / 2] = radius * std::sin(theta);
  }
}

}  // namespace

TorchGenerator::TorchGenerator(std::uint64_t seed)
    : engine_(static_cast<std::mt19937::result_type>(seed & 0xffffffffu)) {}

float TorchGenerator::uniform_float() {
  // 24 random bits: every value is an exact float in [0, 1).
  return static_cast<float>(engine_() & ((1u << 24) - 1)) * (1.0f / (1u << 24));
}

double TorchGenerator::uniform_double() {
  const std::uint64_t hi = engine_();
  const std::uint64_t lo = engine_();
  const std::uint64_t bits = (hi << 32) | lo;
  return static_cast<double>(bits & ((std::uint64_t{1} << 53) - 1)) * (1.0 / (std::uint64_t{1} << 53));
}

double TorchGenerator::normal_double() {
  // Each Box-Muller pair yields two samples: torch returns the cosine one and keeps the sine one in the
  // generator for the next small-path element, even across randn calls (the goldens confirm the reuse).
  if (cached_normal_) {
    const double v = *cached_normal_;
    cached_normal_.reset();
    return v;
  }
  const double u1 = uniform_double();
  const double u2 = uniform_double();
  const double r = std::sqrt(-2.0 * std::log1p(-u2));
  const double theta = 2.0 * std::numbers::pi * u1;
  cached_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

std::vector<float> TorchGenerator::randn(std::int64_t numel) {
  if (numel < 0) throw Error(ErrorCode::invalid_argument, "randn: negative size " + std::to_string(numel));
  std::vector<float> out(static_cast<std::size_t>(numel));
  if (numel < kBlock) {
    for (float& v : out) v = static_cast<float>(normal_double());
    return out;
  }
  for (float& v : out) v = uniform_float();
  for (std::int64_t i = 0; i + kBlock <= numel; i += kBlock) normal_block(out.data() + i);
  if (numel % kBlock != 0) {
    // The ragged tail: torch redraws the last 16 positions (overlapping the last full block) afresh.
    float* tail = out.data() + numel - kBlock;
    for (std::int64_t j = 0; j < kBlock; ++j) tail[j] = uniform_float();
    normal_block(tail);
  }
  return out;
}

}  // namespace fisedit
