// Reading a JSON file with errors that name it (json_file.h).
#include "io/json_file.h"

#include "core/error.h"

#include <fstream>
#include <sstream>

namespace fisedit {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(std::filesystem::exists(path) ? ErrorCode::io : ErrorCode::not_found,
                path.string() + ": cannot open");
  }
  std::stringstream text;
  text << in.rdbuf();
  auto json = nlohmann::json::parse(text.str(), nullptr, false);
  if (json.is_discarded()) throw Error(ErrorCode::corrupt_file, path.string() + ": not valid JSON");
  return json;
}

}  // namespace fisedit
