// fisedit-toyworld-data: the toy world's training data as a byte stream, for the training scripts on
// the GPU machine (built there as one static binary: standard library only).
//
//   fisedit-toyworld-data --seed S --count N [--first I] [--threads T] [--ppm-dir DIR]
//
// Writes N records to stdout, scenes I..I+N-1: 256*256*3 bytes of RGB (row-major), then the prompt in
// 256 bytes (ASCII, NUL-padded). Record k depends on (S, k) only, never on the thread count, so any
// range of a data set can be regenerated alone. --ppm-dir writes the images as PPM files instead, to
// look at them.
#include "toyworld/world.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace fisedit::toyworld;

constexpr std::size_t kPromptBytes = 256;
constexpr std::size_t kImageBytes = std::size_t{kImageSize} * kImageSize * 3;

struct Arguments {
  std::uint64_t seed = 0;
  std::uint64_t count = 0;
  std::uint64_t first = 0;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::string ppm_dir;
};

std::optional<std::uint64_t> parse_number(const std::string& text) {
  std::uint64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<Arguments> parse_arguments(int argc, char** argv) {
  Arguments args;
  bool have_seed = false, have_count = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "fisedit-toyworld-data: " << flag << " needs a value\n";
      return std::nullopt;
    }
    const std::string value = argv[++i];
    if (flag == "--ppm-dir") {
      args.ppm_dir = value;
      continue;
    }
    const auto number = parse_number(value);
    if (!number) {
      std::cerr << "fisedit-toyworld-data: " << flag << " takes a non-negative integer, not '" << value << "'\n";
      return std::nullopt;
    }
    if (flag == "--seed") args.seed = *number, have_seed = true;
    else if (flag == "--count") args.count = *number, have_count = true;
    else if (flag == "--first") args.first = *number;
    else if (flag == "--threads" && *number >= 1 && *number <= 1024) args.threads = static_cast<unsigned>(*number);
    else {
      std::cerr << "fisedit-toyworld-data: unknown option or bad value: " << flag << ' ' << value << '\n';
      return std::nullopt;
    }
  }
  if (!have_seed || !have_count) {
    std::cerr << "usage: fisedit-toyworld-data --seed S --count N [--first I] [--threads T] [--ppm-dir DIR]\n";
    return std::nullopt;
  }
  return args;
}

// Record k of data set S: a stream of its own, splitmix-mixed so that neighbouring (S, k) share nothing.
void make_record(std::uint64_t seed, std::uint64_t k, std::uint8_t* out) {
  Rng rng(Rng(seed).next() ^ (k * 0x9E3779B97F4A7C15ull));
  const Scene scene = random_scene(rng);
  const Image image = render(scene, {.seed = rng.next()});
  std::copy(image.rgb.begin(), image.rgb.end(), out);
  const std::string text = prompt(scene);
  std::fill(out + kImageBytes, out + kImageBytes + kPromptBytes, std::uint8_t{0});
  std::copy_n(text.begin(), std::min(text.size(), kPromptBytes - 1), out + kImageBytes);
}

bool write_ppm(const std::filesystem::path& path, const std::uint8_t* rgb) {
  std::ofstream file(path, std::ios::binary);
  file << "P6\n" << kImageSize << ' ' << kImageSize << "\n255\n";
  file.write(reinterpret_cast<const char*>(rgb), kImageBytes);
  return static_cast<bool>(file);
}

}  // namespace

int main(int argc, char** argv) {
  const auto args = parse_arguments(argc, argv);
  if (!args) return 2;
  if (!args->ppm_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(args->ppm_dir, error);
  }
  // Chunks of records rendered in parallel, written in order; a chunk per thread keeps memory small.
  constexpr std::uint64_t kChunkPerThread = 16;
  const std::uint64_t chunk = kChunkPerThread * args->threads;
  std::vector<std::uint8_t> buffer(chunk * (kImageBytes + kPromptBytes));
  for (std::uint64_t start = 0; start < args->count; start += chunk) {
    const std::uint64_t n = std::min(chunk, args->count - start);
    std::vector<std::jthread> workers;
    for (unsigned t = 0; t < args->threads; ++t) {
      workers.emplace_back([&, t] {
        for (std::uint64_t i = t; i < n; i += args->threads)
          make_record(args->seed, args->first + start + i, &buffer[i * (kImageBytes + kPromptBytes)]);
      });
    }
    workers.clear();  // joins
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint8_t* record = &buffer[i * (kImageBytes + kPromptBytes)];
      if (args->ppm_dir.empty()) {
        if (std::fwrite(record, 1, kImageBytes + kPromptBytes, stdout) != kImageBytes + kPromptBytes) {
          std::cerr << "fisedit-toyworld-data: writing to stdout failed\n";
          return 1;
        }
        continue;
      }
      const std::uint64_t k = args->first + start + i;
      const auto path = std::filesystem::path(args->ppm_dir) / ("toyworld-" + std::to_string(k) + ".ppm");
      if (!write_ppm(path, record)) {
        std::cerr << "fisedit-toyworld-data: cannot write " << path << '\n';
        return 1;
      }
      std::cout << path.string() << '\t' << reinterpret_cast<const char*>(record + kImageBytes) << '\n';
    }
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}
