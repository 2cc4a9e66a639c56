#pragma once
// What the edit tests (test_edit, test_img2img) check of an edit's result: that it changed nothing
// outside its region, in pixels and in latents.
#include "pipeline/generation.h"

#include <cstdint>
#include <vector>

namespace fisedit::test {

// A one-channel mask image of one value (255: may change, 0: keep).
inline Image8 solid_mask(int width, int height, std::uint8_t value) {
  return Image8{width, height, 1, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height, value)};
}

// Pixel values outside `region` (white = may change) that differ from the previous image's.
inline int pixels_changed_outside(const Image8& previous, const Image8& edited, const Image8& region) {
  int changed = 0;
  for (std::size_t p = 0; p < region.pixels.size(); ++p)
    if (region.pixels[p] == 0)
      for (int c = 0; c < 3; ++c) changed += previous.pixels[p * 3 + c] != edited.pixels[p * 3 + c];
  return changed;
}

// Final latents outside the edit's mask that differ from the previous final latents (bit for bit).
inline int latents_changed_outside(const CachedGeneration& previous, const EditResult& edit) {
  const auto& a = previous.latents.back();
  const auto& b = edit.generation.latents.back();
  const std::size_t pixels = edit.mask.values.size();
  int changed = 0;
  for (std::size_t i = 0; i < a.size(); ++i) changed += edit.mask.values[i % pixels] == 0.0f && a[i] != b[i];
  return changed;
}

}  // namespace fisedit::test
