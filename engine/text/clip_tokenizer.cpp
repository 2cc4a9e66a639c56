// The CLIP BPE tokenizer (clip_tokenizer.h): vocabulary files, normalisation, pre-tokenising, BPE merges.
#include "text/clip_tokenizer.h"

#include "core/error.h"
#include "io/json_file.h"

#include <nlohmann/json.hpp>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <mutex>
#include <queue>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace fisedit {
namespace {

constexpr std::size_t kCacheCapacity = 10000;  // HF's BPE cache size: bounded for a long-running app
constexpr char kEndOfWord[] = "</w>";
// Limits far above any CLIP tokenizer (49,408 tokens, 48,894 merges, 2 added tokens), checked before the
// tables are built: added tokens are matched by scanning them all for each prompt.
constexpr std::size_t kMaxVocabulary = 1'000'000;
constexpr std::size_t kMaxMerges = 1'000'000;
constexpr std::size_t kMaxAddedTokens = 1'000;
constexpr std::size_t kMaxAddedTokenBytes = 1'000;

using Json = nlohmann::json;
namespace fs = std::filesystem;
using Merges = std::vector<std::pair<std::string, std::string>>;  // "a", "b"
template <class Char>
using AddedTokens = std::vector<std::pair<std::basic_string<Char>, std::int64_t>>;  // content, id

[[noreturn]] void corrupt(const fs::path& path, const std::string& what) {
  throw Error(ErrorCode::corrupt_file, path.string() + ": not a valid CLIP tokenizer file: " + what);
}

void check_icu(UErrorCode status) {
  if (U_FAILURE(status))
    throw Error(ErrorCode::unsupported, std::string("Unicode text processing failed: ") + u_errorName(status));
}

void append_utf8(std::string& out, char32_t c) {
  std::uint8_t buffer[U8_MAX_LENGTH];
  std::int32_t length = 0;
  U8_APPEND_UNSAFE(buffer, length, c);
  out.append(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(length));
}

// GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves, the others are moved to
// U+0100.., so every byte sequence becomes a string without whitespace or control characters.
std::array<std::string, 256> byte_symbols() {
  std::array<std::string, 256> out;
  char32_t next = 256;
  for (char32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    append_utf8(out[b], printable ? b : next++);
  }
  return out;
}

// \s, \p{L} and \p{N} of the regexes.
bool is_space(char32_t c) { return c == ' ' || (c >= '\t' && c <= '\r') || u_isUWhiteSpace(UChar32(c)); }
bool is_letter(char32_t c) { return (U_GET_GC_MASK(UChar32(c)) & U_GC_L_MASK) != 0; }
bool is_number(char32_t c) { return (U_GET_GC_MASK(UChar32(c)) & U_GC_N_MASK) != 0; }
bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

// The normalizer: NFC, then lowercase one code point at a time, because HF lowercases each char on
// its own (Rust's char::to_lowercase), so a word-final capital sigma becomes σ, not ς as a
// context-aware u_strToLower of the whole string would give. The normalizer's Replace(\s+ -> " ") is
// left out: the word split drops all whitespace anyway. Invalid UTF-8 becomes U+FFFD.
std::u32string normalize(std::string_view text) {
  UErrorCode status = U_ZERO_ERROR;
  std::u16string utf16(text.size(), u'\0');  // never more UTF-16 units than UTF-8 bytes
  std::int32_t utf16_len = 0;
  u_strFromUTF8WithSub(utf16.data(), static_cast<std::int32_t>(utf16.size()), &utf16_len, text.data(),
                       static_cast<std::int32_t>(text.size()), 0xFFFD, nullptr, &status);
  // NFC lengthens a string at most threefold (a Unicode stability guarantee). ICU calls do nothing
  // once `status` holds an error, so one check after them suffices.
  std::u16string composed(3 * static_cast<std::size_t>(utf16_len), u'\0');
  const std::int32_t n = unorm2_normalize(unorm2_getNFCInstance(&status), utf16.data(), utf16_len, composed.data(),
                                          static_cast<std::int32_t>(composed.size()), &status);
  check_icu(status);

  std::u32string out;
  for (std::int32_t i = 0, start = 0; i < n; start = i) {
    UChar32 c = 0;
    U16_NEXT(composed.data(), i, n, c);
    UChar lower[8];
    const std::int32_t lower_len = u_strToLower(lower, 8, composed.data() + start, i - start, "", &status);
    check_icu(status);
    for (std::int32_t j = 0; j < lower_len;) {
      U16_NEXT(lower, j, lower_len, c);
      out += static_cast<char32_t>(c);
    }
  }
  return out;
}

// The Split pre-tokenizer's regex, hand-coded: at each non-space position the alternatives are tried
// in the regex's order:
//   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
// The ByteLevel pre-tokenizer then applies GPT-2's regex to each piece; that only changes the two
// special-token literals, which it cuts into "<|", the letters and "|>".
std::vector<std::u32string_view> split_words(std::u32string_view text) {
  static constexpr std::u32string_view kLiterals[] = {U"<|startoftext|>", U"<|endoftext|>"};
  static constexpr std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<std::u32string_view> words;
  for (std::size_t i = 0, len = 1; i < text.size(); i += len, len = 1) {
    const std::u32string_view rest = text.substr(i);
    const auto match = [&](std::u32string_view prefix) { return rest.starts_with(prefix) && (len = prefix.size()); };
    if (is_space(rest[0])) continue;
    if (std::ranges::any_of(kLiterals, match)) {
      words.insert(words.end(), {rest.substr(0, 2), rest.substr(2, len - 4), rest.substr(len - 2, 2)});
      continue;
    }
    if (!std::ranges::any_of(kContractions, match)) {
      bool (*same_run)(char32_t) = is_letter(rest[0]) ? is_letter : is_number(rest[0]) ? nullptr : is_other;
      while (same_run && len < rest.size() && same_run(rest[len])) ++len;
    }
    words.push_back(rest.substr(0, len));
  }
  return words;
}

// Cuts added tokens out of `text`, leftmost first and longest at a position (HF matches them with a
// leftmost-longest Aho-Corasick automaton).
template <class Char, class OnText, class OnToken>
void split_added(std::basic_string_view<Char> text, const AddedTokens<Char>& tokens, OnText on_text,
                 OnToken on_token) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size();) {
    const typename AddedTokens<Char>::value_type* best = nullptr;
    for (const auto& token : tokens) {
      if (text.substr(i).starts_with(token.first) && (!best || token.first.size() > best->first.size()))
        best = &token;
    }
    if (!best) {
      ++i;
      continue;
    }
    if (i > start) on_text(text.substr(start, i - start));
    on_token(best->second);
    start = i += best->first.size();
  }
  if (start < text.size()) on_text(text.substr(start));
}

// What a tokenizer folder provides, before the lookup tables are built from it.
struct Sources {
  Json vocab;
  fs::path vocab_file;
  Merges merges;  // in rank order
  fs::path merges_file;
  std::vector<std::pair<std::string, bool>> added;  // content, matched after normalization
};

// Appends the merge "a b"; false when `line` is not of that form.
bool add_merge(std::string_view line, Merges& merges) {
  const auto space = line.find(' ');
  if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos) return false;
  merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  return true;
}

Sources read_tokenizer_json(const fs::path& file) {
  Json json = read_json_file(file);
  Json* model = json.is_object() && json.contains("model") ? &json["model"] : nullptr;
  if (!model || !model->is_object() || model->value("type", Json()) != "BPE" || !model->contains("vocab") ||
      !model->contains("merges") || !model->at("merges").is_array())
    corrupt(file, "\"model\" is not a BPE model with \"vocab\" and \"merges\"");
  const Json prefix = model->value("continuing_subword_prefix", Json());
  if (model->value("end_of_word_suffix", Json()) != kEndOfWord || !(prefix.is_null() || prefix == ""))
    throw Error(ErrorCode::unsupported, file.string() + ": not CLIP's BPE (word suffix \"</w>\", no prefix)");
  Sources out{std::move(model->at("vocab")), file, {}, file, {}};
  if (model->at("merges").size() > kMaxMerges)
    corrupt(file, std::to_string(model->at("merges").size()) + " merges, more than the " + std::to_string(kMaxMerges) + " fisedit reads");
  const Json added = json.value("added_tokens", Json::array());
  if (!added.is_array()) corrupt(file, "\"added_tokens\" is not a list");
  if (added.size() > kMaxAddedTokens)
    corrupt(file, std::to_string(added.size()) + " added tokens, more than the " + std::to_string(kMaxAddedTokens) + " fisedit reads");
  for (const Json& merge : model->at("merges")) {  // ["a", "b"] in newer files, "a b" in older ones
    if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string())
      out.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    else if (!merge.is_string() || !add_merge(merge.get<std::string>(), out.merges))
      corrupt(file, "merge " + std::to_string(out.merges.size()) + " is neither [\"a\", \"b\"] nor \"a b\"");
  }
  for (const Json& token : added) {
    const Json content = token.is_object() ? token.value("content", Json()) : Json();
    if (!content.is_string() || content.get<std::string>().empty())
      corrupt(file, "an entry of \"added_tokens\" has no \"content\"");
    if (content.get<std::string>().size() > kMaxAddedTokenBytes)
      corrupt(file, "an added token is longer than " + std::to_string(kMaxAddedTokenBytes) + " bytes");
    out.added.emplace_back(content.get<std::string>(), token.value("normalized", Json()) == true);
  }
  return out;
}

Sources read_vocab_files(const fs::path& dir) {
  Sources out{read_json_file(dir / "vocab.json"), dir / "vocab.json", {}, dir / "merges.txt", {}};
  std::error_code ec;
  if (fs::exists(out.merges_file, ec) && !fs::is_regular_file(out.merges_file, ec))
    corrupt(out.merges_file, "not a regular file");
  std::ifstream in(out.merges_file, std::ios::binary);
  if (!in)
    throw Error(fs::exists(out.merges_file) ? ErrorCode::io : ErrorCode::not_found,
                out.merges_file.string() + ": cannot open");
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty() && !line.starts_with("#version") && !add_merge(line, out.merges))
      corrupt(out.merges_file, "line " + std::to_string(number) + " is not \"a b\"");
    if (out.merges.size() > kMaxMerges)
      corrupt(out.merges_file, "more than the " + std::to_string(kMaxMerges) + " merges fisedit reads");
  }
  return out;
}

std::uint64_t pair_key(std::int64_t a, std::int64_t b) {
  return (static_cast<std::uint64_t>(a) << 32) | static_cast<std::uint32_t>(b);
}

struct MergeRule { std::int32_t rank; std::int64_t new_id; };  // new_id: of the merged symbol

}  // namespace

struct ClipTokenizer::Impl {
  std::unordered_map<std::string, std::int64_t> vocab;
  std::unordered_map<std::int64_t, std::string> id_to_token;
  std::unordered_map<std::uint64_t, MergeRule> merges;
  AddedTokens<char> raw_added;              // matched in the raw text
  AddedTokens<char32_t> normalized_added;  // matched after normalization
  std::array<std::string, 256> bytes = byte_symbols();
  std::int64_t bos = 0, eos = 0, pad = 0;
  std::int64_t next_id = 0;  // the id a token outside the vocabulary gets
  fs::path vocab_file;       // tokenizer.json or vocab.json, for messages
  std::mutex cache_mutex;
  std::unordered_map<std::string, std::vector<std::int64_t>> cache;  // word -> ids

  void build(const Sources& sources);
  std::int64_t add_token(const std::string& content, bool normalized);
  std::vector<std::int64_t> bpe(const std::string& word) const;
  void append_word(std::u32string_view word, std::vector<std::int64_t>& out);
};

void ClipTokenizer::Impl::build(const Sources& sources) {
  const fs::path& file = sources.vocab_file;
  vocab_file = file;
  if (!sources.vocab.is_object()) corrupt(file, "the vocabulary is not a JSON object of token -> id");
  if (sources.vocab.size() > kMaxVocabulary)
    corrupt(file, std::to_string(sources.vocab.size()) + " tokens, more than the " + std::to_string(kMaxVocabulary) + " fisedit reads");
  for (const auto& [token, id] : sources.vocab.items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX)
      corrupt(file, "the id of token \"" + token + "\" is not a non-negative 32-bit integer");
    vocab.emplace(token, id.get<std::int64_t>());
    id_to_token.emplace(id.get<std::int64_t>(), token);
    next_id = std::max(next_id, id.get<std::int64_t>() + 1);
  }
  // BPE starts from one symbol per byte; checking them once here keeps unknown symbols out of it.
  for (const auto& symbol : bytes) {
    if (!vocab.contains(symbol) || !vocab.contains(symbol + kEndOfWord))
      corrupt(file, "the vocabulary lacks the byte symbol \"" + symbol + "\"");
  }
  for (std::size_t rank = 0; rank < sources.merges.size(); ++rank) {
    const auto& [a, b] = sources.merges[rank];
    const auto ia = vocab.find(a);
    const auto ib = vocab.find(b);
    const auto merged = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || merged == vocab.end())
      corrupt(sources.merges_file, "merge " + std::to_string(rank) + " \"" + a + " " + b + "\" uses an unknown token");
    // A repeated pair takes its last rank, as in HF's merge map.
    merges.insert_or_assign(pair_key(ia->second, ib->second), MergeRule{std::int32_t(rank), merged->second});
  }
  for (const auto& [content, normalized] : sources.added) add_token(content, normalized);
}

std::int64_t ClipTokenizer::Impl::add_token(const std::string& content, bool normalized) {
  for (const auto& [text, id] : raw_added)
    if (text == content) return id;
  std::int64_t id = 0;
  if (const auto known = vocab.find(content); known != vocab.end()) {
    id = known->second;
  } else {  // a token outside the vocabulary gets the next free id, as HF's add_tokens does
    id = next_id++;
    id_to_token.emplace(id, content);
  }
  if (normalized)
    normalized_added.emplace_back(normalize(content), id);
  else
    raw_added.emplace_back(content, id);
  return id;
}

// HF's BPE merge loop (tokenizers' Word::merge_all): a queue ordered by (rank, position); entries
// whose pair has changed since they were queued are dropped when popped.
std::vector<std::int64_t> ClipTokenizer::Impl::bpe(const std::string& word) const {
  // prev/next link the symbols into a list over the vector, so merges never move elements.
  struct Symbol { std::int64_t id; int prev, next; bool merged_away; };
  std::vector<Symbol> symbols;
  for (std::size_t i = 0; i < word.size(); ++i) {
    const bool last = i + 1 == word.size();
    const std::string& symbol = bytes[static_cast<unsigned char>(word[i])];
    symbols.push_back({vocab.at(last ? symbol + kEndOfWord : symbol), int(i) - 1, last ? -1 : int(i) + 1, false});
  }
  struct Candidate { std::int32_t rank; int pos; std::int64_t new_id; };
  const auto later = [](const auto& a, const auto& b) { return std::tie(a.rank, a.pos) > std::tie(b.rank, b.pos); };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(later)> queue(later);
  const auto rule_at = [&](int left) -> const MergeRule* {
    const int right = symbols[left].next;
    if (right < 0) return nullptr;
    const auto it = merges.find(pair_key(symbols[left].id, symbols[right].id));
    return it == merges.end() ? nullptr : &it->second;
  };
  const auto push = [&](int left) {
    if (const MergeRule* rule = rule_at(left)) queue.push({rule->rank, left, rule->new_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) push(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    const MergeRule* rule = left.merged_away ? nullptr : rule_at(top.pos);
    if (!rule || rule->new_id != top.new_id) continue;
    Symbol& right = symbols[left.next];
    right.merged_away = true;
    left.id = top.new_id;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  std::vector<std::int64_t> ids;
  for (int i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);  // symbol 0 is never merged away
  return ids;
}

void ClipTokenizer::Impl::append_word(std::u32string_view word, std::vector<std::int64_t>& out) {
  std::string utf8;
  for (const char32_t c : word) append_utf8(utf8, c);
  {
    std::lock_guard lock(cache_mutex);
    if (const auto it = cache.find(utf8); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  auto ids = bpe(utf8);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard lock(cache_mutex);
  if (cache.size() < kCacheCapacity) cache.emplace(std::move(utf8), std::move(ids));
}

ClipTokenizer ClipTokenizer::from_folder(const fs::path& dir) {
  const fs::path tokenizer_json = dir / "tokenizer.json";
  auto impl = std::make_shared<Impl>();
  impl->build(fs::exists(tokenizer_json) ? read_tokenizer_json(tokenizer_json) : read_vocab_files(dir));

  // Special tokens: as named in tokenizer_config.json, else special_tokens_map.json, else CLIPTokenizer's
  // defaults. transformers matches them in the raw text, so SD2's pad token "!" splits words apart.
  std::vector<Json> configs;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    if (!fs::exists(dir / name)) continue;
    configs.push_back(read_json_file(dir / name));
    if (!configs.back().is_object()) corrupt(dir / name, "not a JSON object");
  }
  // Each is a string, an AddedToken object with "content", or null (then the fallback).
  const auto special = [&](const char* key, const std::string& fallback) {
    for (const Json& config : configs) {
      if (!config.contains(key)) continue;
      const Json value = config[key].is_object() ? config[key].value("content", Json()) : config[key];
      return value.is_string() && !value.get<std::string>().empty() ? value.get<std::string>() : fallback;
    }
    return fallback;
  };
  impl->bos = impl->add_token(special("bos_token", "<|startoftext|>"), false);
  impl->eos = impl->add_token(special("eos_token", "<|endoftext|>"), false);
  impl->add_token(special("unk_token", "<|endoftext|>"), false);
  const std::string pad = special("pad_token", "");
  impl->pad = pad.empty() ? impl->eos : impl->add_token(pad, false);
  return ClipTokenizer(std::move(impl));
}

std::vector<std::int64_t> ClipTokenizer::encode_unpadded(std::string_view text) const {
  if (text.size() > static_cast<std::size_t>(INT32_MAX / 4))  // ICU counts in int32
    throw Error(ErrorCode::invalid_argument, "prompt too long to tokenize");
  Impl& impl = *impl_;
  std::vector<std::int64_t> ids{impl.bos};
  const auto on_token = [&](std::int64_t id) { ids.push_back(id); };
  const auto on_normalized = [&](std::u32string_view part) {
    for (const auto word : split_words(part)) impl.append_word(word, ids);
  };
  const auto on_raw = [&](std::string_view segment) {
    split_added<char32_t>(normalize(segment), impl.normalized_added, on_normalized, on_token);
  };
  split_added<char>(text, impl.raw_added, on_raw, on_token);
  ids.push_back(impl.eos);
  return ids;
}

std::vector<std::int64_t> ClipTokenizer::encode(std::string_view text) const {
  auto ids = encode_unpadded(text);
  if (ids.size() > static_cast<std::size_t>(kMaxLength)) ids.erase(ids.begin() + kMaxLength - 1, ids.end() - 1);
  ids.resize(kMaxLength, impl_->pad);  // the erase above kept the EOS
  return ids;
}

std::int64_t ClipTokenizer::bos_id() const { return impl_->bos; }
std::int64_t ClipTokenizer::eos_id() const { return impl_->eos; }
std::int64_t ClipTokenizer::pad_id() const { return impl_->pad; }
std::size_t ClipTokenizer::vocab_size() const { return impl_->id_to_token.size(); }
std::int64_t ClipTokenizer::max_id() const { return impl_->next_id - 1; }
const fs::path& ClipTokenizer::vocabulary_file() const { return impl_->vocab_file; }

void check_tokenizer_fits_encoder(const ClipTokenizer& tokenizer, std::int64_t vocab_size, std::int64_t max_positions,
                                  const fs::path& encoder_config) {
  const auto both = tokenizer.vocabulary_file().string() + " and " + encoder_config.string() + " do not belong together: ";
  if (tokenizer.max_id() >= vocab_size)
    throw Error(ErrorCode::corrupt_file, both + "the tokenizer gives token ids up to " + std::to_string(tokenizer.max_id()) +
                                             ", but the text encoder has embeddings for ids 0.." + std::to_string(vocab_size - 1) +
                                             " (vocab_size " + std::to_string(vocab_size) + ")");
  if (max_positions < ClipTokenizer::kMaxLength)
    throw Error(ErrorCode::corrupt_file, both + "a prompt is " + std::to_string(ClipTokenizer::kMaxLength) +
                                             " tokens, but the text encoder has " + std::to_string(max_positions) +
                                             " positions (max_position_embeddings)");
}

std::string ClipTokenizer::token_text(std::int64_t id) const {
  const auto it = impl_->id_to_token.find(id);
  if (it == impl_->id_to_token.end())
    throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(id) + " is not in the vocabulary");
  return it->second;
}

}  // namespace fisedit
