#pragma once
// Shared helpers for the Qt Test executables.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace fisedit::test {

// ../shared/reference, as configured at build time. Tests that need it fail (never skip) when it is
// missing, so a broken checkout cannot pass silently.
std::filesystem::path reference_dir();

// ||got - want|| / ||want||, accumulated in double: how far an output is from its reference.
double relative_l2(const std::vector<float>& got, const std::vector<float>& want);

// n values offset + scale * U(-1, 1), rounded to what fp16 holds exactly, so that uploads to an fp16
// device and downloads are exact round trips and every backend starts from the same numbers.
std::vector<float> half_random(std::int64_t n, unsigned seed, float scale = 1.0f, float offset = 0.0f);

// The columns (scheduler, prompt, negative, seed, steps, cfg, width, height) and rows of the seeded
// generations in ../shared/reference/seeded/golden.json, for a Qt Test `_data` function.
void seeded_golden_rows();

// A fresh empty directory under the system temp dir, removed when the returned object dies.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
  std::filesystem::path path_;
};

}  // namespace fisedit::test
