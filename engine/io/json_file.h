#pragma once
// Reading JSON files (configs, tokenizers, indexes) with errors that name the file.
#include <nlohmann/json.hpp>

#include <filesystem>

namespace fisedit {

// Reads and parses a JSON file; throws Error(not_found / corrupt_file) naming the file.
nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace fisedit
