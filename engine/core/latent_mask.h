#pragma once
// LatentMask: where an edit may change the latents; a plain value type that requests (io/request.h)
// carry and the edit layer (edit/sparse_step.h, edit/edit_mask.h) computes with.
#include <algorithm>
#include <cstdint>
#include <optional>
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
  // Rows [y0, y1) and columns [x0, x1).
  struct Box {
    std::int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  };
  // The active pixels' bounding box; none when no pixel is active.
  std::optional<Box> bounds() const {
    Box box{height, 0, width, 0};
    for (std::int64_t y = 0; y < height; ++y)
      for (std::int64_t x = 0; x < width; ++x)
        if (values[static_cast<std::size_t>(y * width + x)] != 0.0f) {
          box.y0 = std::min(box.y0, y), box.y1 = std::max(box.y1, y + 1);
          box.x0 = std::min(box.x0, x), box.x1 = std::max(box.x1, x + 1);
        }
    if (box.y1 == 0) return std::nullopt;
    return box;
  }
};

}  // namespace fisedit
