// Starting images (image_read.h): JPEG through libjpeg-turbo's TurboJPEG API (PNG is image_file.cpp's,
// through stb_image), RGB conversion and the fit to a generation's size.
#include "io/image_read.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <turbojpeg.h>

namespace fisedit {
namespace {

bool is_png(const std::string& bytes) {
  static constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kSignature, 8) == 0;
}

bool is_jpeg(const std::string& bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xff && static_cast<unsigned char>(bytes[1]) == 0xd8 &&
         static_cast<unsigned char>(bytes[2]) == 0xff;
}

// Taps of a triangle filter mapping `n_out` samples onto the source span [start, start + length) of
// `n_in` samples: per output sample, the first source index and normalised weights.
struct Taps {
  std::vector<int> first;
  std::vector<std::vector<float>> weights;
};

Taps triangle_taps(int n_in, double start, double length, int n_out) {
  Taps taps;
  const double scale = length / n_out;  // source samples per output sample
  const double support = std::max(1.0, scale);
  for (int i = 0; i < n_out; ++i) {
    const double center = start + (i + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(std::floor(center - support)));
    const int hi = std::min(n_in - 1, static_cast<int>(std::ceil(center + support)));
    std::vector<float> w;
    double total = 0;
    for (int j = lo; j <= hi; ++j) {
      const double d = std::fabs((j + 0.5 - center) / support);
      const double v = std::max(0.0, 1.0 - d);
      w.push_back(static_cast<float>(v));
      total += v;
    }
    if (total <= 0) {  // cannot happen with support >= 1; kept for safety: nearest sample
      const int nearest = std::clamp(static_cast<int>(center), 0, n_in - 1);
      taps.first.push_back(nearest);
      taps.weights.push_back({1.0f});
      continue;
    }
    for (auto& v : w) v = static_cast<float>(v / total);
    taps.first.push_back(lo);
    taps.weights.push_back(std::move(w));
  }
  return taps;
}

}  // namespace

Image8 read_jpeg(const std::filesystem::path& path) {
  const auto bytes = read_image_file(path);
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<unsigned long>::max() / 2))
    throw Error(ErrorCode::corrupt_file, path.string() + ": " + std::to_string(bytes.size()) + " bytes, too large for a JPEG fisedit reads");
  if (!is_jpeg(bytes)) throw Error(ErrorCode::corrupt_file, path.string() + ": not a JPEG file");
  const std::unique_ptr<void, int (*)(tjhandle)> decoder(tjInitDecompress(), tjDestroy);
  if (!decoder) throw Error(ErrorCode::io, path.string() + ": the JPEG decoder could not start (" + tjGetErrorStr2(nullptr) + ")");
  tjhandle tj = decoder.get();
  const auto failure = [&] { return path.string() + ": not a readable JPEG (" + tjGetErrorStr2(tj) + ")"; };
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto size = static_cast<unsigned long>(bytes.size());
  // The size from the frame header, before a pixel is decoded: a small file can claim a huge image.
  int w = 0, h = 0, subsampling = 0, colorspace = 0;
  if (tjDecompressHeader3(tj, data, size, &w, &h, &subsampling, &colorspace) != 0) throw Error(ErrorCode::corrupt_file, failure());
  if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide)
    throw Error(ErrorCode::corrupt_file, path.string() + ": image is " + std::to_string(w) + "x" + std::to_string(h) +
                                             " pixels, larger than the " + std::to_string(kMaxImageSide) + "x" +
                                             std::to_string(kMaxImageSide) + " fisedit reads");
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
    throw Error(ErrorCode::corrupt_file, path.string() + ": a CMYK JPEG (fisedit reads grey and colour JPEGs: save it as RGB)");
  const bool grey = colorspace == TJCS_GRAY;
  const int c = grey ? 1 : 3;
  Image8 image{w, h, c, std::vector<std::uint8_t>(static_cast<std::size_t>(w) * h * c)};
  // Corrupt or cut-short data is refused (TJFLAG_STOPONWARNING), not decoded into a half-grey picture.
  if (tjDecompress2(tj, data, size, image.pixels.data(), w, 0, h, grey ? TJPF_GRAY : TJPF_RGB,
                    TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS) != 0)
    throw Error(ErrorCode::corrupt_file, failure());
  return image;
}

Image8 read_image(const std::filesystem::path& path) {
  std::string head;
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(std::filesystem::exists(path) ? ErrorCode::io : ErrorCode::not_found, path.string() + ": cannot open");
    head.resize(8);
    in.read(head.data(), 8);
    head.resize(static_cast<std::size_t>(in.gcount()));
  }
  if (is_png(head)) return read_png(path);
  if (is_jpeg(head)) return read_jpeg(path);
  throw Error(ErrorCode::corrupt_file, path.string() + ": not a PNG or JPEG file");
}

Image8 to_rgb(const Image8& image) {
  if (image.width <= 0 || image.height <= 0 || (image.channels != 1 && image.channels != 3 && image.channels != 4) ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels)
    throw Error(ErrorCode::invalid_argument, "inconsistent image (" + std::to_string(image.width) + "x" +
                                                 std::to_string(image.height) + "x" + std::to_string(image.channels) + ", " +
                                                 std::to_string(image.pixels.size()) + " bytes)");
  if (image.channels == 3) return image;
  const std::size_t n = static_cast<std::size_t>(image.width) * image.height;
  Image8 out{image.width, image.height, 3, std::vector<std::uint8_t>(n * 3)};
  for (std::size_t p = 0; p < n; ++p)
    for (int k = 0; k < 3; ++k)
      out.pixels[p * 3 + k] = image.channels == 1 ? image.pixels[p] : image.pixels[p * 4 + k];
  return out;
}

Image8 fit_image(const Image8& source, int width, int height) {
  if (width <= 0 || height <= 0)
    throw Error(ErrorCode::invalid_argument, "cannot fit an image to " + std::to_string(width) + "x" + std::to_string(height));
  Image8 rgb = to_rgb(source);
  if (rgb.width == width && rgb.height == height) return rgb;
  // The centred region of the target's aspect ratio.
  const double target = static_cast<double>(width) / height, own = static_cast<double>(rgb.width) / rgb.height;
  double cw = rgb.width, ch = rgb.height;
  if (own > target) cw = rgb.height * target;
  else ch = rgb.width / target;
  const Taps across = triangle_taps(rgb.width, (rgb.width - cw) / 2, cw, width);
  const Taps down = triangle_taps(rgb.height, (rgb.height - ch) / 2, ch, height);
  // Rows first (into float), then columns.
  std::vector<float> rows(static_cast<std::size_t>(rgb.height) * width * 3);
  for (int y = 0; y < rgb.height; ++y)
    for (int x = 0; x < width; ++x) {
      float acc[3] = {0, 0, 0};
      const auto& w = across.weights[static_cast<std::size_t>(x)];
      for (std::size_t j = 0; j < w.size(); ++j) {
        const std::size_t src = (static_cast<std::size_t>(y) * rgb.width + across.first[static_cast<std::size_t>(x)] + j) * 3;
        for (int k = 0; k < 3; ++k) acc[k] += w[j] * rgb.pixels[src + k];
      }
      for (int k = 0; k < 3; ++k) rows[(static_cast<std::size_t>(y) * width + x) * 3 + k] = acc[k];
    }
  Image8 out{width, height, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y) {
    const auto& w = down.weights[static_cast<std::size_t>(y)];
    for (int x = 0; x < width; ++x)
      for (int k = 0; k < 3; ++k) {
        float acc = 0;
        for (std::size_t j = 0; j < w.size(); ++j)
          acc += w[j] * rows[((down.first[static_cast<std::size_t>(y)] + j) * width + x) * 3 + k];
        out.pixels[(static_cast<std::size_t>(y) * width + x) * 3 + k] =
            static_cast<std::uint8_t>(std::clamp(std::lround(acc), 0L, 255L));
      }
  }
  return out;
}

}  // namespace fisedit
