#pragma once
#include <string>
#include <vector>

namespace fisedit::cli {

// Each returns the process exit code; errors are reported on stderr in one line.
int tokenize_command(const std::vector<std::string>& args);
int info_command(const std::vector<std::string>& args);
int generate_command(const std::vector<std::string>& args);
int edit_command(const std::vector<std::string>& args);

}  // namespace fisedit::cli
