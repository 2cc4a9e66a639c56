#pragma once
// A read-only memory mapping of a whole file (RAII), safe against the file shrinking under it.
//
// A mapped file truncated (or rewritten in place, or on a drive that went away) after it was mapped
// raises SIGBUS at the first read of a page past its new end, which used to take the app down. Every
// mapping is registered with a SIGBUS handler (installed with the first mapping, passing other faults
// on to the handler before it): a fault inside a registered mapping replaces the rest of the mapping
// with zero pages, so the read completes, and marks the mapping damaged. Readers then ask
// check_intact() (or check_mapped_intact() for bytes of any mapping) after reading, and get an Error
// naming the file instead of zeros: the loader after its checks, the pipeline after uploading weights.
// Mapping stays zero-copy and as fast as before; copying the files into memory cost a copy of every
// weight in RAM (see docs/reliability.md, "Faults").
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

namespace fisedit {

class MappedFile {
public:
  // Throws Error(not_found / io) naming the file.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  std::size_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }

  // Whether a read since the mapping was made faulted (the file shrank): those bytes read as zeros.
  bool damaged() const;
  // Throws Error(io) naming the file when damaged().
  void check_intact() const;

private:
  MappedFile(std::filesystem::path path, const std::byte* data, std::size_t size, int slot)
      : path_(std::move(path)), data_(data), size_(size), slot_(slot) {}
  std::filesystem::path path_;
  const std::byte* data_;
  std::size_t size_;
  int slot_;  // in the SIGBUS handler's table; -1 when not registered (an empty file, or a full table)
};

// Throws Error(io) naming the file when `bytes` lie in a mapping that is damaged (see above); bytes
// elsewhere (owned memory) pass.
void check_mapped_intact(std::span<const std::byte> bytes);

}  // namespace fisedit
