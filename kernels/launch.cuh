#pragma once
// What the kernels' launchers share: grid sizes for grid-stride loops and the test for 16-byte vector
// access (8 halves at a time).
#include <cstddef>
#include <cstdint>

namespace fisedit::kernels {

constexpr int kVec = 8;  // halves per 16-byte access

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Blocks of `threads` for `work` items, at least one and at most `limit`: the kernels stride over the
// grid for what lies beyond.
inline unsigned blocks_for(std::size_t work, std::size_t threads = 256, std::size_t limit = 65535) {
  const std::size_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < limit ? (blocks ? blocks : 1) : limit);
}

}  // namespace fisedit::kernels
