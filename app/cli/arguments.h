#pragma once
// A small command-line parser: `--name value` options, `--flag` switches and positional arguments,
// each command declaring the options it accepts.
#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fisedit::cli {

class Arguments {
public:
  // Throws std::invalid_argument with a user-facing message on unknown or incomplete options.
  Arguments(const std::vector<std::string>& args, const std::set<std::string>& options,
            const std::set<std::string>& switches = {});

  std::optional<std::string> get(const std::string& name) const;
  std::string require(const std::string& name) const;  // throws std::invalid_argument when absent
  bool has(const std::string& name) const;               // switches
  // A byte count: digits, or a number with a 1024-based suffix K, M or G ("0", "500M", "1.5G"); none
  // when absent. Throws std::invalid_argument naming the option otherwise.
  std::optional<std::size_t> bytes(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

private:
  std::map<std::string, std::string> values_;
  std::set<std::string> switches_;
  std::vector<std::string> positional_;
};

}  // namespace fisedit::cli
