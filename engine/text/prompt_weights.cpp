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

namespace {

// Where the word BREAK (capitals, not part of a longer word) splits a run's text.
std::vector<std::string_view> split_at_breaks(std::string_view text) {
  const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  std::vector<std::string_view> parts;
  std::size_t start = 0, at = 0;
  while ((at = text.find("BREAK", at)) != std::string_view::npos) {
    const bool alone = (at == 0 || !letter(text[at - 1])) && (at + 5 >= text.size() || !letter(text[at + 5]));
    if (alone) {
      parts.push_back(text.substr(start, at - start));
      start = at + 5;
    }
    at += 5;
  }
  parts.push_back(text.substr(start));
  return parts;
}

}  // namespace

WeightedTokens prompt_tokens(const ClipTokenizer& tokenizer, std::string_view prompt) {
  WeightedTokens out;
  for (const auto& run : parse_prompt_weights(prompt)) {
    const auto parts = split_at_breaks(run.text);
    for (std::size_t p = 0; p < parts.size(); ++p) {
      if (p > 0 && (out.breaks.empty() || out.breaks.back() != out.ids.size())) out.breaks.push_back(out.ids.size());
      const auto ids = tokenizer.encode_unpadded(parts[p]);  // BOS, ids, EOS
      for (std::size_t k = 1; k + 1 < ids.size(); ++k) {
        out.ids.push_back(ids[k]);
        out.weights.push_back(run.weight);
      }
    }
  }
  // A BREAK at the very start or end, or two in a row, makes no empty chunk.
  std::erase_if(out.breaks, [&](std::size_t b) { return b == 0 || b >= out.ids.size(); });
  return out;
}

std::vector<WeightedTokens> chunk_tokens(const WeightedTokens& content) {
  std::vector<WeightedTokens> chunks(1);
  auto next_break = content.breaks.begin();
  for (std::size_t i = 0; i < content.ids.size(); ++i) {
    const bool forced = next_break != content.breaks.end() && *next_break == i;
    if (forced) ++next_break;
    if (forced || chunks.back().ids.size() == static_cast<std::size_t>(kChunkTokens)) chunks.emplace_back();
    chunks.back().ids.push_back(content.ids[i]);
    chunks.back().weights.push_back(content.weights[i]);
  }
  return chunks;
}

std::vector<WeightedTokens> encoder_chunks(const ClipTokenizer& tokenizer, std::string_view prompt) {
  const auto content = prompt_tokens(tokenizer, prompt);
  const auto chunks = chunk_tokens(content);
  if (chunks.size() > static_cast<std::size_t>(kMaxPromptChunks))
    throw Error(ErrorCode::invalid_argument,
                "the prompt is " + std::to_string(content.ids.size()) + " tokens in " + std::to_string(chunks.size()) +
                    " chunks; at most " + std::to_string(kMaxPromptChunks) + " chunks of " +
                    std::to_string(kChunkTokens) + " tokens are read: shorten it");
  std::vector<WeightedTokens> out;
  for (const auto& chunk : chunks) {
    WeightedTokens e;
    e.ids.push_back(tokenizer.bos_id());
    e.ids.insert(e.ids.end(), chunk.ids.begin(), chunk.ids.end());
    e.ids.push_back(tokenizer.eos_id());
    e.ids.resize(ClipTokenizer::kMaxLength, tokenizer.pad_id());
    e.weights.assign(ClipTokenizer::kMaxLength, 1.0f);
    std::copy(chunk.weights.begin(), chunk.weights.end(), e.weights.begin() + 1);
    out.push_back(std::move(e));
  }
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
