#pragma once
// CLIP's byte-level BPE tokenizer, reproducing HuggingFace transformers' CLIPTokenizer (tokenizers
// backend) id for id, so prompts condition the text encoder exactly as they do in diffusers.
//
// Pipeline (as in the tokenizer.json that transformers writes for CLIP):
//   1. added tokens are cut out of the raw text and emitted as their ids; in SD2 the pad token "!" is
//      one of them, so a "!" in a prompt becomes id 0 rather than part of a BPE word;
//   2. each remaining segment: NFC, lowercase, split into words (letter runs, single digits, runs of
//      other symbols, contractions such as 's; whitespace dropped);
//   3. each word: UTF-8 bytes mapped to GPT-2's printable byte alphabet, "</w>" appended to the last
//      symbol, merges applied by rank;
//   4. BOS ... EOS around the ids; encode() truncates and pads to the 77 positions CLIP was trained on.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fisedit {

class ClipTokenizer {
public:
  static constexpr int kMaxLength = 77;

  // Loads from a diffusers tokenizer folder: tokenizer.json when present, otherwise vocab.json +
  // merges.txt with the special tokens named in tokenizer_config.json (or special_tokens_map.json).
  // Throws Error(not_found / corrupt_file) naming the file.
  static ClipTokenizer from_folder(const std::filesystem::path& dir);

  // BOS, the prompt's ids, EOS; not truncated (a UI can show what falls past the limit).
  std::vector<std::int64_t> encode_unpadded(std::string_view text) const;
  // Exactly kMaxLength ids: the first kMaxLength - 2 content ids between BOS and EOS, then pad ids.
  std::vector<std::int64_t> encode(std::string_view text) const;

  std::int64_t bos_id() const;
  std::int64_t eos_id() const;
  std::int64_t pad_id() const;
  std::size_t vocab_size() const;
  // The largest id encode() can give (vocabulary, added and special tokens), and the file the
  // vocabulary was read from (tokenizer.json or vocab.json).
  std::int64_t max_id() const;
  const std::filesystem::path& vocabulary_file() const;
  // The vocabulary string of `id` (byte-level form, e.g. "cat</w>"); throws Error(invalid_argument)
  // for ids outside the vocabulary.
  std::string token_text(std::int64_t id) const;

private:
  struct Impl;
  explicit ClipTokenizer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Shared between copies: the tables are immutable after loading and the word cache is
  // mutex-guarded, so one tokenizer (or its copies) can be used from several threads.
  std::shared_ptr<Impl> impl_;
};

// Throws Error(corrupt_file) naming the tokenizer's file and `encoder_config` when the tokenizer can
// give ids the text encoder has no embedding for (max_id() >= vocab_size: an out-of-range embedding
// lookup at the first prompt) or the encoder has fewer positions than the kMaxLength tokens a prompt
// is encoded as.
void check_tokenizer_fits_encoder(const ClipTokenizer& tokenizer, std::int64_t vocab_size, std::int64_t max_positions,
                                  const std::filesystem::path& encoder_config);

}  // namespace fisedit
