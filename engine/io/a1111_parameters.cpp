// AUTOMATIC1111's "parameters" PNG text: writing it for a request and reading it back (a1111_parameters.h).
#include "io/a1111_parameters.h"

#include <charconv>
#include <sstream>
#include <utility>
#include <vector>

namespace fisedit {

std::string a1111_sampler_name(const std::string& scheduler) {
  if (scheduler == "dpmpp2m") return "DPM++ 2M";
  if (scheduler == "euler") return "Euler";
  if (scheduler == "euler_a") return "Euler a";
  if (scheduler == "dpmpp2m_karras") return "DPM++ 2M Karras";
  if (scheduler == "euler_karras") return "Euler Karras";
  return "DDIM";
}

namespace {

std::string format_float(float v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// "Key: value, Key: "quoted, value", ..." -> pairs; commas inside double quotes stay in the value.
std::vector<std::pair<std::string, std::string>> parameter_pairs(const std::string& line) {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const std::size_t colon = line.find(": ", i);
    if (colon == std::string::npos) break;
    std::string key = line.substr(i, colon - i), value;
    std::size_t j = colon + 2;
    if (j < line.size() && line[j] == '"') {
      const std::size_t close = line.find('"', j + 1);
      value = line.substr(j + 1, (close == std::string::npos ? line.size() : close) - j - 1);
      j = close == std::string::npos ? line.size() : close + 1;
      while (j < line.size() && line[j] != ',') ++j;
    } else {
      const std::size_t comma = line.find(',', j);
      value = line.substr(j, (comma == std::string::npos ? line.size() : comma) - j);
      j = comma == std::string::npos ? line.size() : comma;
    }
    pairs.emplace_back(std::move(key), std::move(value));
    i = j < line.size() ? j + 1 : j;
  }
  return pairs;
}

template <class T>
std::optional<T> number(const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

}  // namespace

ImageParameters parse_a1111_parameters(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  ImageParameters p;
  // The parameter line is the last one, when it reads like one (A1111 asks for three pairs or more).
  std::vector<std::pair<std::string, std::string>> pairs;
  if (!lines.empty()) {
    pairs = parameter_pairs(lines.back());
    if (pairs.size() >= 3)
      lines.pop_back();
    else
      pairs.clear();
  }
  // Prompt lines, then from a line starting "Negative prompt: " the negative prompt's lines.
  const std::string kNegative = "Negative prompt: ";
  std::vector<std::string> prompt_lines, negative_lines;
  for (const auto& line : lines) {
    if (negative_lines.empty() && line.rfind(kNegative, 0) == 0)
      negative_lines.push_back(line.substr(kNegative.size()));
    else
      (negative_lines.empty() ? prompt_lines : negative_lines).push_back(line);
  }
  const auto join = [](const std::vector<std::string>& parts) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? "\n" : "") + parts[i];
    return out;
  };
  p.prompt = join(prompt_lines);
  p.negative_prompt = join(negative_lines);
  std::string sampler, schedule;
  for (const auto& [key, value] : pairs) {
    if (key == "Steps") {
      p.steps = number<int>(value);
    } else if (key == "Seed") {
      p.seed = number<std::uint64_t>(value);
    } else if (key == "CFG scale") {
      p.cfg_scale = number<float>(value);
    } else if (key == "Size") {
      const auto x = value.find('x');
      if (x != std::string::npos) {
        p.width = number<int>(value.substr(0, x));
        p.height = number<int>(value.substr(x + 1));
      }
    } else if (key == "Sampler") {
      sampler = value;
    } else if (key == "Schedule type") {
      schedule = value;
    } else if (key == "Denoising strength") {
      p.denoising_strength = number<float>(value);
    }
  }
  // A1111 1.9+ names the schedule apart; its single-name form appends it ("DPM++ 2M Karras").
  // "Automatic" is the sampler's default there: Karras for DPM++ 2M, the plain sigmas for the others.
  if (schedule == "Automatic" && sampler == "DPM++ 2M") schedule = "Karras";
  if (!schedule.empty() && schedule != "Automatic" && schedule != "Uniform" && !sampler.empty())
    sampler += " " + schedule;
  for (const auto& name : scheduler_names())
    if (!sampler.empty() && a1111_sampler_name(name) == sampler) p.scheduler = name;
  if (!p.scheduler) p.unknown_sampler = sampler;
  return p;
}

std::string a1111_parameters(const GenerationRequest& r, const std::string& model_name) {
  std::ostringstream s;
  s << r.prompt << "\n";
  if (!r.negative_prompt.empty()) s << "Negative prompt: " << r.negative_prompt << "\n";
  s << "Steps: " << r.steps << ", Sampler: " << a1111_sampler_name(r.scheduler) << ", CFG scale: " << format_float(r.cfg_scale)
    << ", Seed: " << r.seed << ", Size: " << r.width << "x" << r.height << ", Model: " << model_name;
  if (r.init_image) s << ", Denoising strength: " << format_float(r.strength);
  return s.str();
}

}  // namespace fisedit
