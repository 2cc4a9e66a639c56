#pragma once
// Which tokens an edited prompt shares with the prompt it edits, for attention control (docs/method.md
// section 3.3): the two token sequences aligned by their longest common subsequence, as
// Prompt-to-Prompt aligns a refined prompt with the original. Tokens on the common subsequence keep
// the original's cross-attention maps during detection; the others (new words) keep their own.
#include <cstdint>
#include <span>
#include <vector>

namespace fisedit {

// For each position of new_ids, the position in old_ids of the token it is aligned with, or -1 when
// it is not on the longest common subsequence. Aligned pairs are equal ids, both sequences'
// positions increase along the alignment, and no alignment has more pairs. Where several have as
// many, each token aligns with the earliest one it can (so a word added at the end leaves the
// original's positions where they were).
std::vector<std::int32_t> token_alignment(std::span<const std::int64_t> old_ids, std::span<const std::int64_t> new_ids);

}  // namespace fisedit
