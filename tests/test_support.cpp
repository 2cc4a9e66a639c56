#include "test_support.h"

#include <random>
#include <stdexcept>

namespace fisedit::test {

std::filesystem::path reference_dir() {
  std::filesystem::path dir = FISEDIT_REFERENCE_DIR;
  if (!std::filesystem::is_directory(dir / "tiny-sd2"))
    throw std::runtime_error("reference data missing at " + dir.string() +
                             " (configure with -DFISEDIT_REFERENCE_DIR=...)");
  return dir;
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
