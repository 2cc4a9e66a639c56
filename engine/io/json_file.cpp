// Reading a JSON file with errors that name it, and size and depth limits (json_file.h).
#include "io/json_file.h"

#include "core/error.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <sstream>

namespace fisedit {
namespace {

// The deepest nesting of arrays and objects in `text`, stopping once it passes `limit` (strings skipped).
int nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

nlohmann::json parse_json_text(std::string_view text, const std::string& what) {
  if (nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
    throw Error(ErrorCode::corrupt_file, what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  auto json = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (json.is_discarded()) throw Error(ErrorCode::corrupt_file, what + ": not valid JSON");
  return json;
}

JsonFit json_to_int(const nlohmann::json& v, int& out) {
  if (v.is_number_unsigned()) {
    if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<int>::max())) return JsonFit::out_of_range;
    out = static_cast<int>(v.get<std::uint64_t>());
    return JsonFit::ok;
  }
  if (!v.is_number_integer()) return JsonFit::wrong_type;
  const auto x = v.get<std::int64_t>();
  if (x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max()) return JsonFit::out_of_range;
  out = static_cast<int>(x);
  return JsonFit::ok;
}

JsonFit json_to_float(const nlohmann::json& v, float& out) {
  if (!v.is_number()) return JsonFit::wrong_type;
  const double x = v.get<double>();
  if (!std::isfinite(x) || std::abs(x) > static_cast<double>(std::numeric_limits<float>::max())) return JsonFit::out_of_range;
  out = static_cast<float>(x);
  return JsonFit::ok;
}

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) throw Error(ErrorCode::not_found, path.string() + ": cannot open (no such file)");
  if (!std::filesystem::is_regular_file(status))
    throw Error(ErrorCode::corrupt_file, path.string() + ": not a regular file");
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > kMaxJsonFileBytes)
    throw Error(ErrorCode::corrupt_file, path.string() + ": " + std::to_string(size) + " bytes, larger than the " +
                                             std::to_string(kMaxJsonFileBytes >> 20) + " MB a JSON file may have");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::io, path.string() + ": cannot open");
  std::stringstream text;
  text << in.rdbuf();
  return parse_json_text(text.str(), path.string());
}

}  // namespace fisedit
