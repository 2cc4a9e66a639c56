#pragma once
// safetensors files: memory-mapped reading with full validation, and atomic writing.
// Format: 8-byte little-endian header length N, N bytes of JSON header, then the data area.
#include "core/tensor.h"
#include "io/mapped_file.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fisedit {

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  std::uint64_t begin;  // byte offsets inside the data area
  std::uint64_t end;
};

class SafetensorsFile {
public:
  // Maps and validates the whole header; throws Error(corrupt_file) naming the file and the tensor.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_->path(); }
  // Throws Error(io) naming the file when it shrank under its mapping since it was opened (tensors
  // read since then may hold zeros: mapped_file.h).
  void check_intact() const { file_->check_intact(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const TensorInfo* find(std::string_view name) const;
  Tensor tensor(const TensorInfo& info) const;
  Tensor tensor(std::string_view name) const;  // throws Error(not_found)

private:
  std::shared_ptr<const MappedFile> file_;
  const std::byte* data_area_ = nullptr;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (in the given order) atomically: a temporary file renamed over `path`.
void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace fisedit
