#pragma once
// Shared helpers for the Qt Test executables.
#include <filesystem>
#include <string>

namespace fisedit::test {

// ../shared/reference, as configured at build time. Tests that need it fail (never skip) when it is
// missing, so a broken checkout cannot pass silently.
std::filesystem::path reference_dir();

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
