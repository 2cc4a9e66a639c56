#pragma once
// The engine's tuning knobs read from the environment (FISEDIT_REPLAY_STEPS, FISEDIT_SPARSE_DENSE_UP_TO,
// ...): callers read each once and keep it in a function-local static.
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace fisedit {

// "1" turns a knob on, "0" off; unset, empty or anything else leaves `fallback`.
inline bool env_flag(const char* name, bool fallback) {
  const char* v = std::getenv(name);
  if (!v) return fallback;
  const std::string_view s(v);
  return s == "1" ? true : s == "0" ? false : fallback;
}

// A whole number at least `min`; unset or empty leaves `fallback`.
inline std::int64_t env_int(const char* name, std::int64_t fallback, std::int64_t min) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  const std::int64_t n = std::atoll(v);
  return n < min ? min : n;
}

}  // namespace fisedit
