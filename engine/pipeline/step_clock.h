#pragma once
// What generation.cpp and edit.cpp share around their step loops: the stage clock, and the
// cancellation check made before each step and stage. Private to pipeline/.
#include "core/error.h"

#include <chrono>
#include <stop_token>
#include <string>

namespace fisedit::pipeline_detail {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Throws Error(cancelled) "<what> cancelled" once `stop` is requested.
inline void check_stop(const std::stop_token& stop, const char* what) {
  if (stop.stop_requested()) throw Error(ErrorCode::cancelled, std::string(what) + " cancelled");
}

}  // namespace fisedit::pipeline_detail
