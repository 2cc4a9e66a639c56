// The longest-common-subsequence alignment of two prompts' tokens (token_alignment.h).
#include "edit/token_alignment.h"

#include <algorithm>

namespace fisedit {

std::vector<std::int32_t> token_alignment(std::span<const std::int64_t> old_ids, std::span<const std::int64_t> new_ids) {
  const std::size_t n = old_ids.size(), m = new_ids.size();
  // suffix[i][j]: length of the longest common subsequence of old_ids[i:] and new_ids[j:] (77 x 77
  // for CLIP prompts: no need for anything cleverer than the table).
  std::vector<std::int32_t> suffix((n + 1) * (m + 1), 0);
  const auto at = [&](std::size_t i, std::size_t j) -> std::int32_t& { return suffix[i * (m + 1) + j]; };
  for (std::size_t i = n; i-- > 0;)
    for (std::size_t j = m; j-- > 0;)
      at(i, j) = old_ids[i] == new_ids[j] ? at(i + 1, j + 1) + 1 : std::max(at(i + 1, j), at(i, j + 1));
  // Walk from the front: equal tokens always lie on some longest subsequence, so taking them at once
  // is optimal and aligns them as early as possible.
  std::vector<std::int32_t> map(m, -1);
  std::size_t i = 0, j = 0;
  while (i < n && j < m) {
    if (old_ids[i] == new_ids[j]) {
      map[j++] = static_cast<std::int32_t>(i++);
    } else if (at(i + 1, j) >= at(i, j + 1)) {
      ++i;
    } else {
      ++j;
    }
  }
  return map;
}

}  // namespace fisedit
