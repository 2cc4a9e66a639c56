// Prompt emphasis (prompt_weights.h): the parser, weighted tokens, and the weighting of the encoder's output.
#include "text/prompt_weights.h"

#include "core/error.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace fisedit {
namespace {

constexpr float kRound = 1.1f;         // "(...)"
constexpr float kSquare = 1.0f / 1.1f;  // "[...]"

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// At `i` (just past a ':'): optional spaces, a number, optional spaces, ')'. The number and the
// position past the ')' when it is so.
bool explicit_weight(std::string_view s, std::size_t i, float& weight, std::size_t& end) {
  while (i < s.size() && is_space(s[i])) ++i;
  std::size_t j = i;
  while (j < s.size() && (s[j] == '+' || s[j] == '-' || s[j] == '.' || (s[j] >= '0' && s[j] <= '9'))) ++j;
  if (j == i) return false;
  const auto [ptr, ec] = std::from_chars(s.data() + (s[i] == '+' ? i + 1 : i), s.data() + j, weight);
  if (ec != std::errc() || ptr != s.data() + j) return false;
  while (j < s.size() && is_space(s[j])) ++j;
  if (j >= s.size() || s[j] != ')') return false;
  end = j + 1;
  return true;
}

}  // namespace

std::vector<WeightedText> parse_prompt_weights(std::string_view s) {
  std::vector<WeightedText> runs;
  std::vector<std::size_t> round, square;  // where each open bracket's runs start
  const auto multiply = [&](std::size_t from, float factor) {
    for (std::size_t k = from; k < runs.size(); ++k) runs[k].weight *= factor;
  };
  // Every piece of text is a run of its own until the end (a bracket's multiplier applies to the runs
  // from where it opened), then neighbours of one weight merge.
  const auto literal = [&](std::string_view text) { runs.push_back({std::string(text), 1.0f}); };
  std::size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '\\' && i + 1 < s.size() && (s[i + 1] == '(' || s[i + 1] == ')' || s[i + 1] == '[' || s[i + 1] == ']' ||
                                          s[i + 1] == '\\')) {
      literal(s.substr(i + 1, 1));
      i += 2;
    } else if (c == '\\') {  // a lone backslash escapes nothing and is dropped, as in A1111
      ++i;
    } else if (c == '(') {
      round.push_back(runs.size());
      ++i;
    } else if (c == '[') {
      square.push_back(runs.size());
      ++i;
    } else if (float weight = 0.0f; c == ':' && !round.empty() && explicit_weight(s, i + 1, weight, i)) {
      multiply(round.back(), weight);
      round.pop_back();
    } else if (c == ')' && !round.empty()) {
      multiply(round.back(), kRound);
      round.pop_back();
      ++i;
    } else if (c == ']' && !square.empty()) {
      multiply(square.back(), kSquare);
      square.pop_back();
      ++i;
    } else {
      std::size_t j = i + 1;
      while (j < s.size() && s[j] != '\\' && s[j] != '(' && s[j] != ')' && s[j] != '[' && s[j] != ']' && s[j] != ':') ++j;
      literal(s.substr(i, j - i));
      i = j;
    }
  }
  for (const auto from : round) multiply(from, kRound);
  for (const auto from : square) multiply(from, kSquare);
  // Merge neighbours of one weight.
  std::vector<WeightedText> merged;
  for (auto& run : runs) {
    if (!merged.empty() && merged.back().weight == run.weight)
      merged.back().text += run.text;
    else
      merged.push_back(std::move(run));
  }
  if (merged.empty()) merged.push_back({std::string(), 1.0f});
  return merged;
}

bool WeightedTokens::weighted() const {
  return std::any_of(weights.begin(), weights.end(), [](float w) { return w != 1.0f; });
}

WeightedTokens prompt_tokens(const ClipTokenizer& tokenizer, std::string_view prompt) {
  WeightedTokens out;
  for (const auto& run : parse_prompt_weights(prompt)) {
    const auto ids = tokenizer.encode_unpadded(run.text);  // BOS, ids, EOS
    for (std::size_t k = 1; k + 1 < ids.size(); ++k) {
      out.ids.push_back(ids[k]);
      out.weights.push_back(run.weight);
    }
  }
  return out;
}

WeightedTokens encoder_tokens(const ClipTokenizer& tokenizer, std::string_view prompt) {
  const auto content = prompt_tokens(tokenizer, prompt);
  const std::size_t kept = std::min<std::size_t>(content.ids.size(), ClipTokenizer::kMaxLength - 2);
  WeightedTokens out;
  out.ids.push_back(tokenizer.bos_id());
  out.ids.insert(out.ids.end(), content.ids.begin(), content.ids.begin() + static_cast<std::ptrdiff_t>(kept));
  out.ids.push_back(tokenizer.eos_id());
  out.ids.resize(ClipTokenizer::kMaxLength, tokenizer.pad_id());
  out.weights.assign(ClipTokenizer::kMaxLength, 1.0f);
  std::copy_n(content.weights.begin(), kept, out.weights.begin() + 1);
  return out;
}

void apply_token_weights(std::vector<float>& hidden, const std::vector<float>& weights) {
  if (weights.empty() || hidden.size() % weights.size() != 0)
    throw Error(ErrorCode::invalid_argument, "token weights do not match the text encoder's output");
  for (float w : weights)
    if (!std::isfinite(w) || std::abs(w) > 1e6f)
      throw Error(ErrorCode::invalid_argument, "a prompt weight of " + std::to_string(w) +
                                                   " is out of range; use weights like (word:1.3)");
  const std::size_t channels = hidden.size() / weights.size();
  double before = 0.0, after = 0.0;
  for (float v : hidden) before += v;
  for (std::size_t row = 0; row < weights.size(); ++row)
    for (std::size_t c = 0; c < channels; ++c) hidden[row * channels + c] *= weights[row];
  for (float v : hidden) after += v;
  if (after == 0.0) return;  // nothing to rescale against
  const auto rescale = static_cast<float>(before / after);
  for (auto& v : hidden) v *= rescale;
}

}  // namespace fisedit
