#pragma once
// Reading JSON files (configs, tokenizers, indexes) with errors that name the file, and with limits on
// size and nesting depth checked before parsing (deeply nested JSON would overflow the stack when the
// parsed value is copied or destroyed recursively).
#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <string_view>

namespace fisedit {

// Deeper nesting than any config, tokenizer, index or project file needs.
inline constexpr int kMaxJsonDepth = 100;
// Larger than any tokenizer.json (about 2 MB for CLIP) or project file by far.
inline constexpr std::uintmax_t kMaxJsonFileBytes = 64u * 1024u * 1024u;

// Reads and parses a JSON file; throws Error(not_found / io / corrupt_file) naming the file.
nlohmann::json read_json_file(const std::filesystem::path& path);

// Parses `text`; throws Error(corrupt_file) "<what>: not valid JSON" or "<what>: JSON nested deeper
// than ..." (`what` names the file or the part of it).
nlohmann::json parse_json_text(std::string_view text, const std::string& what);

// The strict scalar reads every JSON reader of the engine shares (config files in io/model_config.cpp,
// requests in io/request_json.cpp); each words its own message from the outcome.
enum class JsonFit { ok, wrong_type, out_of_range };
// A JSON integer that fits `int`: never a float (1.5, or 2.0), a boolean or a value that would wrap.
JsonFit json_to_int(const nlohmann::json& value, int& out);
// A JSON number (integer or float) that is finite and within float's range: nlohmann reads 1e999 as
// infinity, and 1e300 is finite as a double but infinite as a float.
JsonFit json_to_float(const nlohmann::json& value, float& out);

}  // namespace fisedit
