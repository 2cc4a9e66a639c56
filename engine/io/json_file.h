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

}  // namespace fisedit
