#pragma once
// LatentMask: where an edit may change the latents; a plain value type that requests (io/request.h)
// carry and the edit layer (edit/sparse_step.h, edit/edit_mask.h) computes with.
#include <algorithm>
#include <cstdint>
#include <vector>

namespace fisedit {

// A latent-resolution mask: h x w values, 1 = the edit may change this latent pixel.
struct LatentMask {
  std::int64_t height = 0, width = 0;
  std::vector<float> values;
  // Share of active latent pixels.
  double fraction() const {
    if (values.empty()) return 0.0;
    return static_cast<double>(std::count_if(values.begin(), values.end(), [](float v) { return v != 0.0f; })) /
           static_cast<double>(values.size());
  }
  // No active pixel.
  bool empty() const { return std::all_of(values.begin(), values.end(), [](float v) { return v == 0.0f; }); }
  // Every pixel active.
  bool full() const { return std::all_of(values.begin(), values.end(), [](float v) { return v != 0.0f; }); }
};

}  // namespace fisedit
