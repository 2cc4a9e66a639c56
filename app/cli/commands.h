#pragma once
// fisedit-cli's commands, one function each: tokenize, info, generate and edit.
#include <string>
#include <vector>

namespace fisedit::cli {

// Each returns the process exit code; errors are reported on stderr in one line.
int tokenize_command(const std::vector<std::string>& args);
int info_command(const std::vector<std::string>& args);
int generate_command(const std::vector<std::string>& args);
int edit_command(const std::vector<std::string>& args);

}  // namespace fisedit::cli
