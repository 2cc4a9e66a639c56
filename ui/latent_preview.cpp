// The preview of latents (latent_preview.h): a linear map from latent channels to RGB, per pixel, and an
// edit's, inside its region over the previous image.
#include "ui/latent_preview.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace fisedit::ui {
namespace {

// Rows: R, G, B; columns: latent channels 0..3.
constexpr float kLatentToRgb[3][4] = {
    {0.298f, 0.187f, -0.158f, -0.184f},
    {0.207f, 0.286f, 0.189f, -0.271f},
    {0.208f, 0.173f, 0.264f, -0.473f},
};

// [-1, 1] -> [0, 255], as the VAE's output is mapped to bytes.
uchar toByte(float v) { return static_cast<uchar>(std::lround(std::clamp((v + 1.0f) * 127.5f, 0.0f, 255.0f))); }

}  // namespace

QImage latentPreview(std::span<const float> latents, int channels, int height, int width) {
  if (channels != 4 || height <= 0 || width <= 0 ||
      latents.size() != static_cast<std::size_t>(channels) * static_cast<std::size_t>(height * width))
    return {};
  const std::size_t plane = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  QImage small(width, height, QImage::Format_RGB888);
  for (int y = 0; y < height; ++y) {
    uchar* row = small.scanLine(y);
    for (int x = 0; x < width; ++x) {
      const std::size_t at = static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x);
      for (int rgb = 0; rgb < 3; ++rgb) {
        float v = 0;
        for (int c = 0; c < 4; ++c) v += kLatentToRgb[rgb][c] * latents[static_cast<std::size_t>(c) * plane + at];
        row[3 * x + rgb] = toByte(v);
      }
    }
  }
  // Nearest, not smooth: an approximation should look like one, and the blocks line up with the
  // 8x8 pixels each latent pixel becomes.
  return small.scaled(width * kLatentToImageScale, height * kLatentToImageScale, Qt::IgnoreAspectRatio,
                      Qt::FastTransformation);
}

QImage editPreview(const QImage& base, std::span<const float> latents, int channels, int height, int width,
                   std::span<const float> region) {
  const QImage preview = latentPreview(latents, channels, height, width);
  if (preview.isNull() || base.size() != preview.size() ||
      region.size() != static_cast<std::size_t>(height) * static_cast<std::size_t>(width))
    return {};
  QImage out = base.convertToFormat(QImage::Format_RGB888);
  constexpr int s = kLatentToImageScale;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      if (region[static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)] == 0.0f) continue;
      for (int row = y * s; row < (y + 1) * s; ++row)
        std::copy_n(preview.constScanLine(row) + 3 * x * s, 3 * s, out.scanLine(row) + 3 * x * s);
    }
  return out;
}

}  // namespace fisedit::ui
