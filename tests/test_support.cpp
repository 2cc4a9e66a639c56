// Shared helpers of the Qt Test executables (test_support.h): golden rows, reference dir, relative L2, temp dirs.
#include "test_support.h"

#include "core/half.h"

#include <QtTest>

#include <cstdlib>
#include <cmath>
#include <random>
#include <stdexcept>

namespace fisedit::test {

void seeded_golden_rows() {
  QTest::addColumn<QString>("scheduler");
  QTest::addColumn<QString>("prompt");
  QTest::addColumn<QString>("negative");
  QTest::addColumn<int>("seed");
  QTest::addColumn<int>("steps");
  QTest::addColumn<float>("cfg");
  QTest::addColumn<int>("width");
  QTest::addColumn<int>("height");
  QTest::newRow("ddim") << "ddim" << "a photo of a cat" << "" << 7 << 10 << 7.5f << 128 << 128;
  QTest::newRow("dpmpp2m") << "dpmpp2m" << "a red car in the snow" << "blurry" << 8 << 12 << 5.0f << 192 << 128;
}

std::vector<float> half_random(std::int64_t n, unsigned seed, float scale, float offset) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = half_to_float(float_to_half(offset + scale * dist(rng)));
  return v;
}

std::filesystem::path reference_dir() {
  // The environment wins over the configured path: on the GPU machine the reference data travels in
  // .device/reference, not at the ../shared/reference the build saw.
  const char* env = std::getenv("FISEDIT_REFERENCE_DIR");
  std::filesystem::path dir = env && *env ? env : FISEDIT_REFERENCE_DIR;
  if (!std::filesystem::is_directory(dir / "tiny-sd2"))
    throw std::runtime_error("reference data missing at " + dir.string() +
                             " (set FISEDIT_REFERENCE_DIR, or configure with -DFISEDIT_REFERENCE_DIR=...)");
  return dir;
}

double relative_l2(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return std::sqrt(diff / norm);
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() / ("fisedit-test-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace fisedit::test
