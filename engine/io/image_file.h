#pragma once
// PNG files: 8-bit images with text chunks (the "parameters" chunk AUTOMATIC1111 writes and reads, and
// our own JSON record), written atomically.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace fisedit {

struct Image8 {
  int width = 0;
  int height = 0;
  int channels = 0;                 // 1 (grey), 3 (RGB) or 4 (RGBA)
  std::vector<std::uint8_t> pixels;  // row-major, interleaved channels
};

using TextChunks = std::vector<std::pair<std::string, std::string>>;  // keyword, UTF-8 text

// Throws Error(invalid_argument) for an inconsistent image, Error(io) when the file cannot be written.
// ASCII texts go in tEXt chunks, others in uncompressed iTXt (UTF-8), as PIL does for latin-1-unsafe text.
void write_png(const std::filesystem::path& path, const Image8& image, const TextChunks& text = {});
// The bytes write_png() writes, for a PNG that goes elsewhere than a file (the clipboard). Throws
// Error(invalid_argument) for an inconsistent image.
std::string encode_png(const Image8& image, const TextChunks& text = {});
// The largest image side fisedit makes or reads, in pixels: generation sizes (the app, fisedit-cli) and
// mask PNGs are refused above it (a 4096x4096 image already needs a 512x512 latent).
inline constexpr int kMaxImageSide = 4096;

// The largest image file fisedit reads (PNG or JPEG), in bytes: far above any image within
// kMaxImageSide (a 4096x4096 RGBA PNG stored uncompressed is ~64 MiB), so a hostile file of
// gigabytes is refused before it is read into memory.
inline constexpr std::uintmax_t kMaxImageFileBytes = std::uintmax_t{256} << 20;
// An image file's bytes, for the readers below and read_jpeg: Error(not_found / io) when it cannot be
// opened, Error(corrupt_file) naming it when it is larger than kMaxImageFileBytes.
std::string read_image_file(const std::filesystem::path& path);

// Throws Error(not_found / corrupt_file). The size is read from the PNG header and checked against
// kMaxImageSide before anything is decoded.
Image8 read_png(const std::filesystem::path& path);
// tEXt and uncompressed iTXt chunks of a PNG, in file order.
TextChunks read_png_text(const std::filesystem::path& path);

}  // namespace fisedit
