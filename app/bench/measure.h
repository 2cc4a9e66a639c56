#pragma once
// What fisedit-bench measures with: repeated timings of one stage with the device synchronised around
// each, their statistics, and the memory a backend holds (Backend::device_memory: bytes in use and
// their peak, the driver's view of the whole card) where the backend can say.
#include "backend/backend.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fisedit::bench {

struct Stats {
  double median = 0, min = 0, max = 0, mean = 0, stddev = 0;  // milliseconds
  int n = 0;
};
Stats summarize(std::vector<double> samples_ms);
nlohmann::json to_json(const Stats& s);

// Runs `body` `warmup` times untimed (first-call work: cuDNN algorithm choice, pool growth, lazy
// module loading), then `repeat` times, each timed from a synchronised device to a synchronised device.
// `enqueue` (optional) gets the host's time until body returns, before the device is waited for:
// when it is close to the whole time, the host's launches (not the device) bound the stage.
Stats time_repeats(Backend& backend, int warmup, int repeat, const std::function<void()>& body,
                   Stats* enqueue = nullptr);

// Device memory as the backend's allocator sees it; every query is empty on backends without one (CPU).
class DeviceMemory {
public:
  explicit DeviceMemory(Backend& backend) : backend_(backend) {}
  std::optional<std::size_t> in_use() const;  // held by live tensors (weights included)
  std::optional<std::size_t> peak() const;    // most in use since the last reset_peak()
  void reset_peak();

  struct Driver {
    std::size_t used = 0, total = 0;  // the whole card, other processes included
  };
  std::optional<Driver> driver() const;

private:
  Backend& backend_;
};

// Peak resident memory of this process (getrusage), bytes.
std::size_t host_peak_rss();
// Now, UTC, ISO 8601 ("2026-11-26T09:14:03Z").
std::string utc_now();
// The argument vector as one shell-quoted line.
std::string command_line(int argc, char** argv);

}  // namespace fisedit::bench
