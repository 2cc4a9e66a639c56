// safetensors reading with the whole header validated, and atomic writing (safetensors.h).
#include "io/safetensors.h"

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace fisedit {
namespace {

// The reference implementation refuses headers above 100 MB; so do we, before allocating anything.
constexpr std::uint64_t kMaxHeaderBytes = 100u * 1024u * 1024u;

[[noreturn]] void corrupt(const std::filesystem::path& path, const std::string& what) {
  throw Error(ErrorCode::corrupt_file, path.string() + ": not a valid safetensors file: " + what);
}

[[noreturn]] void corrupt_tensor(const std::filesystem::path& path, const std::string& name, const std::string& what) {
  corrupt(path, "tensor '" + name + "': " + what);
}

std::uint64_t read_le_u64(const std::byte* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

std::uint64_t as_u64(const nlohmann::json& v, const std::filesystem::path& path, const std::string& name,
                     const char* field) {
  if (!v.is_number_integer() || (v.is_number_integer() && !v.is_number_unsigned() && v.get<std::int64_t>() < 0))
    corrupt_tensor(path, name, std::string(field) + " must hold non-negative integers");
  return v.get<std::uint64_t>();
}

TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry, std::uint64_t data_size,
                       const std::filesystem::path& path) {
  if (!entry.is_object()) corrupt_tensor(path, name, "entry is not a JSON object");
  const auto dtype_it = entry.find("dtype");
  const auto shape_it = entry.find("shape");
  const auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || shape_it == entry.end() || offsets_it == entry.end())
    corrupt_tensor(path, name, "entry needs \"dtype\", \"shape\" and \"data_offsets\"");
  if (!dtype_it->is_string()) corrupt_tensor(path, name, "dtype is not a string");
  const auto dtype_str = dtype_it->get<std::string>();
  const auto dtype = dtype_from_name(dtype_str);
  if (!dtype) corrupt_tensor(path, name, "unknown dtype \"" + dtype_str + "\"");

  TensorInfo info{name, *dtype, {}, 0, 0};
  if (!shape_it->is_array()) corrupt_tensor(path, name, "shape is not an array");
  // Element count, refusing products that overflow 64 bits.
  std::uint64_t numel = 1;
  bool overflow = false;
  for (const auto& d : *shape_it) {
    const auto dim = as_u64(d, path, name, "shape");
    if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) overflow = true;
    if (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / dim) overflow = true;
    numel *= dim;
    info.shape.push_back(static_cast<std::int64_t>(dim));
  }
  if (!offsets_it->is_array() || offsets_it->size() != 2)
    corrupt_tensor(path, name, "data_offsets must be [begin, end]");
  info.begin = as_u64((*offsets_it)[0], path, name, "data_offsets");
  info.end = as_u64((*offsets_it)[1], path, name, "data_offsets");
  if (info.begin > info.end)
    corrupt_tensor(path, name, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                                   "] end before they begin");
  if (info.end > data_size)
    corrupt_tensor(path, name, "data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
                                   "] extend past the end of the data area (" + std::to_string(data_size) +
                                   " bytes; is the file truncated?)");
  const auto elem = dtype_size(*dtype);
  if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / elem || numel * elem != info.end - info.begin)
    corrupt_tensor(path, name, "shape " + shape_to_string(info.shape) + " of " + dtype_str + " needs " +
                                   (overflow ? std::string("more than 2^64") : std::to_string(numel * elem)) +
                                   " bytes but data_offsets span " + std::to_string(info.end - info.begin));
  return info;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.file_ = MappedFile::open(path);
  const auto bytes = f.file_->bytes();
  if (bytes.size() < 8)
    corrupt(path, "file is " + std::to_string(bytes.size()) + " bytes, shorter than the 8-byte header length");
  const std::uint64_t header_len = read_le_u64(bytes.data());
  if (header_len > kMaxHeaderBytes)
    corrupt(path, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > bytes.size() - 8)
    corrupt(path, "header length " + std::to_string(header_len) + " runs past the end of the " +
                      std::to_string(bytes.size()) + "-byte file (truncated?)");

  const auto* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  const nlohmann::json header = [&] {
    try {
      return parse_json_text(std::string_view(header_begin, header_len), "header");
    } catch (const Error& e) {
      corrupt(path, e.what());
    }
  }();
  if (!header.is_object()) corrupt(path, "header is not a JSON object");

  f.data_area_ = bytes.data() + 8 + header_len;
  const std::uint64_t data_size = bytes.size() - 8 - header_len;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) corrupt(path, "__metadata__ is not a JSON object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) corrupt(path, "__metadata__ value of '" + k + "' is not a string");
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    f.tensors_.push_back(parse_entry(name, entry, data_size, path));
  }

  // No two tensors may share bytes: sort by offset and compare neighbours (empty tensors share none).
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : f.tensors_)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      corrupt(path, "tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name + "' overlap in the data area");
  // The tensors tile the data area exactly, as the reference implementation requires: a gap or bytes left
  // over mean a header length or offsets that are off, and tensors read from the wrong bytes.
  std::uint64_t covered = 0;
  for (const auto* t : by_offset) {
    if (t->begin != covered)
      corrupt(path, "tensor '" + t->name + "' starts at byte " + std::to_string(t->begin) + " of the data area, but the tensor before it ends at " +
                        std::to_string(covered) + " (a gap: header length or data_offsets wrong?)");
    covered = t->end;
  }
  if (covered != data_size)
    corrupt(path, "the tensors cover " + std::to_string(covered) + " bytes of the " + std::to_string(data_size) +
                      "-byte data area (header length or data_offsets wrong, or bytes appended?)");

  std::sort(f.tensors_.begin(), f.tensors_.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

Tensor SafetensorsFile::tensor(const TensorInfo& info) const {
  return Tensor(info.dtype, info.shape, data_area_ + info.begin, file_);
}

Tensor SafetensorsFile::tensor(std::string_view name) const {
  const auto* info = find(name);
  if (!info) throw Error(ErrorCode::not_found, path().string() + ": no tensor named '" + std::string(name) + "'");
  return tensor(*info);
}

void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", std::string(dtype_name(t.dtype()))},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // pad so the data area starts 8-byte aligned

  AtomicFile out(path);
  std::byte len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xffu);
  out.write(len, sizeof len);
  out.write(reinterpret_cast<const std::byte*>(text.data()), text.size());
  for (const auto& [name, t] : tensors) out.write(t.data(), t.nbytes());
  out.commit();
}

}  // namespace fisedit
