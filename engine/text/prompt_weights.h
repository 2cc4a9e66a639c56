#pragma once
// AUTOMATIC1111's emphasis syntax, which ComfyUI and most Stable Diffusion front ends share:
// "(words)" multiplies their weight by 1.1, "[words]" divides it by 1.1, "(words:1.5)" multiplies it
// by 1.5, nesting multiplies, and "\(" "\)" "\[" "\]" "\\" are the literal characters (a backslash
// before anything else is dropped). Unbalanced brackets apply to the end of the prompt; a ")" or "]"
// with nothing open is literal text.
//
// A weighted prompt conditions the U-Net as A1111 does it: the text encoder runs on the prompt's
// tokens without the syntax, then each token's output row is multiplied by its weight and the whole
// [77, C] output is rescaled to its mean before weighting. A prompt whose weights are all 1 is
// encoded exactly as before (the tokens of its text, no rescaling): diffusers' conditioning.
//
// Long prompts, as AUTOMATIC1111 and ComfyUI read them: the content tokens are cut into chunks of at
// most 75 (kChunkTokens), and the word BREAK (in capitals, on its own) ends a chunk early. Each chunk
// is encoded on its own as BOS, its tokens, EOS and padding (77 positions), weighted and rescaled on
// its own, and the chunks' outputs are concatenated along the sequence, so the U-Net's
// cross-attention reads 77 x chunks keys. A prompt of at most 75 tokens is one chunk: encoded exactly
// as before.
#include "text/clip_tokenizer.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fisedit {

struct WeightedText {
  std::string text;
  float weight = 1.0f;
};

// The prompt's text in runs of one weight (neighbours of equal weight merged; at least one run).
std::vector<WeightedText> parse_prompt_weights(std::string_view prompt);

inline constexpr int kChunkTokens = ClipTokenizer::kMaxLength - 2;
// The most chunks a prompt may have (600 tokens): a longer one is refused, never cut short in silence.
inline constexpr int kMaxPromptChunks = 8;

struct WeightedTokens {
  std::vector<std::int64_t> ids;
  std::vector<float> weights;       // one per id
  std::vector<std::size_t> breaks;  // positions in ids where a BREAK starts a new chunk (increasing)
  bool weighted() const;            // some weight is not 1
};

// The prompt's content tokens (no BOS/EOS, not truncated, BREAKs as `breaks`), each run tokenized on
// its own.
WeightedTokens prompt_tokens(const ClipTokenizer& tokenizer, std::string_view prompt);
// The content tokens cut into chunks (at most kChunkTokens each, a new one at each BREAK); at least one
// chunk (empty for an empty prompt). Any number of chunks: the UI counts them; prompt_chunks refuses.
std::vector<WeightedTokens> chunk_tokens(const WeightedTokens& content);
// The text encoder's input, one entry per chunk: BOS, the chunk's tokens, EOS, pad ids up to
// kMaxLength; BOS, EOS and padding weigh 1. Throws Error(invalid_argument) past kMaxPromptChunks.
std::vector<WeightedTokens> encoder_chunks(const ClipTokenizer& tokenizer, std::string_view prompt);

// hidden [L, C] row-major (the text encoder's output for one of encoder_chunks' chunks), weighted in place:
// row i times weights[i], then all of it scaled back to its mean before weighting.
void apply_token_weights(std::vector<float>& hidden, const std::vector<float>& weights);

}  // namespace fisedit
