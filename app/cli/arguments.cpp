// fisedit-cli's command-line parser (arguments.h): options, switches and positional arguments.
#include "cli/arguments.h"

#include <stdexcept>

namespace fisedit::cli {

Arguments::Arguments(const std::vector<std::string>& args, const std::set<std::string>& options,
                     const std::set<std::string>& switches) {
  bool only_positional = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (only_positional || !a.starts_with("--")) {
      positional_.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positional = true;
      continue;
    }
    auto name = a.substr(2);
    std::optional<std::string> inline_value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      inline_value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switches.count(name)) {
      switches_.insert(name);
    } else if (options.count(name)) {
      if (inline_value) {
        values_[name] = *inline_value;
      } else {
        if (i + 1 >= args.size()) throw std::invalid_argument("option --" + name + " needs a value");
        values_[name] = args[++i];
      }
    } else {
      throw std::invalid_argument("unknown option --" + name);
    }
  }
}

std::optional<std::string> Arguments::get(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::nullopt : std::optional(it->second);
}

std::string Arguments::require(const std::string& name) const {
  if (auto v = get(name)) return *v;
  throw std::invalid_argument("option --" + name + " is required");
}

bool Arguments::has(const std::string& name) const { return switches_.count(name) > 0; }

std::optional<std::size_t> Arguments::bytes(const std::string& name) const {
  const auto text = get(name);
  if (!text) return std::nullopt;
  std::size_t used = 0;
  double value = -1;
  try {
    value = std::stod(*text, &used);
  } catch (const std::exception&) {
  }
  const std::string suffix = text->substr(used);
  const double unit = suffix.empty() ? 1.0 : suffix == "K" ? 1024.0 : suffix == "M" ? 1048576.0 : suffix == "G" ? 1073741824.0 : -1.0;
  if (!(value >= 0) || unit < 0)
    throw std::invalid_argument("--" + name + " expects bytes, e.g. 0, 500M or 4G, not '" + *text + "'");
  return static_cast<std::size_t>(value * unit);
}

}  // namespace fisedit::cli
