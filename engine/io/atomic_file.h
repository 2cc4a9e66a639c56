#pragma once
// Writes a file so that readers see either the old content or the whole new content: data goes to a
// temporary file beside the target, which commit() flushes and renames over it. Without commit() the
// temporary file is removed and the target is untouched.
#include <cstddef>
#include <cstdio>
#include <filesystem>

namespace fisedit {

// Throws Error(io) naming `target` unless it is missing or a regular file: folders, devices, FIFOs,
// sockets and symbolic links are refused, never replaced (AtomicFile checks this too; front ends call it
// before a long computation whose result goes there).
void check_output_path(const std::filesystem::path& target);

class AtomicFile {
public:
  explicit AtomicFile(std::filesystem::path target);  // throws Error(io)
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const std::byte* data, std::size_t size);  // throws Error(io)
  void commit();                                         // throws Error(io)

private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::FILE* file_ = nullptr;
};

}  // namespace fisedit
