#pragma once
// fisedit-bench's table: the report JSON (what --json writes) rendered for a terminal, so the two
// never disagree.
#include <nlohmann/json.hpp>

#include <cstdio>

namespace fisedit::bench {

void print_report(const nlohmann::json& report, std::FILE* out);

}  // namespace fisedit::bench
