// PNG reading and writing with text chunks (image_file.h), through stb_image and zlib.
#include "io/image_file.h"

#include "core/error.h"
#include "io/atomic_file.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#include <stb_image.h>

namespace fisedit {
namespace {

constexpr unsigned char kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

std::uint32_t get_u32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

std::string chunk(const std::string& type, const std::string& data) {
  std::string out;
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  const std::string body = type + data;
  out += body;
  put_u32(out, static_cast<std::uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
  return out;
}

std::string text_chunk(const std::string& keyword, const std::string& text) {
  if (keyword.empty() || keyword.size() > 79 || keyword.find('\0') != std::string::npos)
    throw Error(ErrorCode::invalid_argument, "PNG text keyword '" + keyword + "' must be 1-79 characters");
  const bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) return chunk("tEXt", keyword + '\0' + text);
  // keyword, NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, text
  return chunk("iTXt", keyword + std::string("\0\0\0\0\0", 5) + text);
}

}  // namespace

std::string read_image_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(std::filesystem::exists(path) ? ErrorCode::io : ErrorCode::not_found, path.string() + ": cannot open");
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  if (!error && size > kMaxImageFileBytes)
    throw Error(ErrorCode::corrupt_file, path.string() + ": " + std::to_string(size) + " bytes, larger than the " +
                                             std::to_string(kMaxImageFileBytes >> 20) + " MiB an image file fisedit reads may have");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_png(const std::filesystem::path& path, const Image8& image, const TextChunks& text) {
  std::string png;
  try {
    png = encode_png(image, text);
  } catch (const Error& e) {
    throw Error(e.code(), path.string() + ": " + e.what());
  }
  AtomicFile out(path);
  out.write(reinterpret_cast<const std::byte*>(png.data()), png.size());
  out.commit();
}

std::string encode_png(const Image8& image, const TextChunks& text) {
  if (image.width <= 0 || image.height <= 0 || (image.channels != 1 && image.channels != 3 && image.channels != 4) ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels)
    throw Error(ErrorCode::invalid_argument, "inconsistent image (" + std::to_string(image.width) + "x" +
                                                 std::to_string(image.height) + "x" + std::to_string(image.channels) +
                                                 ", " + std::to_string(image.pixels.size()) + " bytes)");
  int length = 0;
  unsigned char* encoded = stbi_write_png_to_mem(image.pixels.data(), image.width * image.channels, image.width,
                                                 image.height, image.channels, &length);
  if (!encoded) throw Error(ErrorCode::out_of_memory, "PNG encoding failed");
  std::string png(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(length));
  STBIW_FREE(encoded);

  // Text chunks go right after IHDR (signature 8 bytes + IHDR 4+4+13+4), where readers look first.
  constexpr std::size_t kAfterHeader = 8 + 25;
  std::string texts;
  for (const auto& [keyword, value] : text) texts += text_chunk(keyword, value);
  png.insert(kAfterHeader, texts);
  return png;
}

Image8 read_png(const std::filesystem::path& path) {
  auto bytes = read_image_file(path);
  const auto failure = [] {
    const char* reason = stbi_failure_reason();  // NULL when stb gave none
    return std::string(reason ? reason : "unknown reason");
  };
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()))
    throw Error(ErrorCode::corrupt_file, path.string() + ": " + std::to_string(bytes.size()) + " bytes, too large for a PNG fisedit reads");
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kSignature, 8) != 0)
    throw Error(ErrorCode::corrupt_file, path.string() + ": not a PNG file");
  // Every chunk must lie inside the file: stb grows its buffer to a data chunk's declared length
  // before reading it, so a 73-byte file declaring a 1.2 GB IDAT chunk took 1.2 GB (found by fuzz_png).
  // Empty image data chunks (legal, and no encoder's habit) are dropped: stb copies zero bytes from a
  // null buffer for one that comes first (undefined behaviour, found by fuzz_png under UBSan).
  for (std::size_t pos = 8; pos < bytes.size();) {
    if (bytes.size() - pos < 12)
      throw Error(ErrorCode::corrupt_file, path.string() + ": truncated PNG chunk (" + std::to_string(bytes.size() - pos) +
                                               " bytes where a chunk needs at least 12)");
    const std::uint32_t length = get_u32(reinterpret_cast<const unsigned char*>(bytes.data()) + pos);
    if (length > bytes.size() - pos - 12)
      throw Error(ErrorCode::corrupt_file, path.string() + ": truncated PNG chunk (it claims " + std::to_string(length) +
                                               " bytes; the file has " + std::to_string(bytes.size() - pos - 12) + " left)");
    if (bytes.compare(pos + 4, 4, "IEND") == 0) break;
    if (length == 0 && bytes.compare(pos + 4, 4, "IDAT") == 0) {
      bytes.erase(pos, 12);
      continue;
    }
    pos += 12 + length;
  }
  int w = 0, h = 0, c = 0;
  const auto* begin = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int size = static_cast<int>(bytes.size());
  // The size from the header, before a pixel is decoded: a small file can claim a huge image.
  if (!stbi_info_from_memory(begin, size, &w, &h, &c))
    throw Error(ErrorCode::corrupt_file, path.string() + ": not a readable PNG (" + failure() + ")");
  if (w <= 0 || h <= 0 || w > kMaxImageSide || h > kMaxImageSide)
    throw Error(ErrorCode::corrupt_file, path.string() + ": image is " + std::to_string(w) + "x" + std::to_string(h) +
                                             " pixels, larger than the " + std::to_string(kMaxImageSide) + "x" +
                                             std::to_string(kMaxImageSide) + " fisedit reads");
  unsigned char* data = stbi_load_from_memory(begin, size, &w, &h, &c, 0);
  if (!data) throw Error(ErrorCode::corrupt_file, path.string() + ": not a readable PNG (" + failure() + ")");
  if (c == 2) {  // grey + alpha: keep the grey
    Image8 grey{w, h, 1, std::vector<std::uint8_t>(static_cast<std::size_t>(w) * h)};
    for (std::size_t i = 0; i < grey.pixels.size(); ++i) grey.pixels[i] = data[2 * i];
    stbi_image_free(data);
    return grey;
  }
  Image8 image{w, h, c, std::vector<std::uint8_t>(data, data + static_cast<std::size_t>(w) * h * c)};
  stbi_image_free(data);
  return image;
}

TextChunks read_png_text(const std::filesystem::path& path) {
  const auto bytes = read_image_file(path);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 8 || std::memcmp(p, kSignature, 8) != 0)
    throw Error(ErrorCode::corrupt_file, path.string() + ": not a PNG file");
  TextChunks out;
  std::size_t pos = 8;
  while (pos + 12 <= bytes.size()) {
    const std::uint32_t length = get_u32(p + pos);
    if (length > bytes.size() - pos - 12) throw Error(ErrorCode::corrupt_file, path.string() + ": truncated PNG chunk");
    const std::string type(bytes, pos + 4, 4);
    const std::string data(bytes, pos + 8, length);
    if (type == "tEXt" || type == "iTXt") {
      const auto nul = data.find('\0');
      if (nul != std::string::npos) {
        const auto keyword = data.substr(0, nul);
        if (type == "tEXt") {
          out.emplace_back(keyword, data.substr(nul + 1));
        } else if (nul + 2 < data.size() && data[nul + 1] == 0) {  // uncompressed iTXt only
          const auto lang_end = data.find('\0', nul + 3);
          const auto key_end = lang_end == std::string::npos ? lang_end : data.find('\0', lang_end + 1);
          if (key_end != std::string::npos) out.emplace_back(keyword, data.substr(key_end + 1));
        }
      }
    }
    if (type == "IEND") break;
    pos += 12 + length;
  }
  return out;
}

}  // namespace fisedit
