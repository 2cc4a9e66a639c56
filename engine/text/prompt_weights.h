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

struct WeightedTokens {
  std::vector<std::int64_t> ids;
  std::vector<float> weights;  // one per id
  bool weighted() const;       // some weight is not 1
};

// The prompt's content tokens (no BOS/EOS, not truncated), each run tokenized on its own.
WeightedTokens prompt_tokens(const ClipTokenizer& tokenizer, std::string_view prompt);
// The text encoder's input: BOS, the first kMaxLength - 2 content tokens, EOS, pad ids up to
// kMaxLength; BOS, EOS and padding weigh 1.
WeightedTokens encoder_tokens(const ClipTokenizer& tokenizer, std::string_view prompt);

// hidden [L, C] row-major (the text encoder's output for encoder_tokens' L ids), weighted in place:
// row i times weights[i], then all of it scaled back to its mean before weighting.
void apply_token_weights(std::vector<float>& hidden, const std::vector<float>& weights);

}  // namespace fisedit
