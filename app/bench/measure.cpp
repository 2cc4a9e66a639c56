// fisedit-bench's measuring tools (measure.h): timing statistics, device memory, peak RSS, run metadata.
#include "bench/measure.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <numeric>

namespace fisedit::bench {

Stats summarize(std::vector<double> v) {
  Stats s;
  s.n = static_cast<int>(v.size());
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.min = v.front();
  s.max = v.back();
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(n);
  double sq = 0;
  for (double x : v) sq += (x - s.mean) * (x - s.mean);
  s.stddev = n > 1 ? std::sqrt(sq / static_cast<double>(n - 1)) : 0.0;  // sample standard deviation
  return s;
}

nlohmann::json to_json(const Stats& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"mean", s.mean}, {"stddev", s.stddev}, {"n", s.n}};
}

Stats time_repeats(Backend& backend, int warmup, int repeat, const std::function<void()>& body, Stats* enqueue) {
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) body();
  backend.synchronize();
  std::vector<double> samples, host;
  for (int i = 0; i < repeat; ++i) {
    const auto t0 = Clock::now();
    body();
    host.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    backend.synchronize();  // ops only enqueue on CUDA: the time is the device's, not the launches'
    samples.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  if (enqueue) *enqueue = summarize(std::move(host));
  return summarize(std::move(samples));
}

std::optional<std::size_t> DeviceMemory::in_use() const {
  if (const auto m = backend_.device_memory()) return m->in_use;
  return std::nullopt;
}

std::optional<std::size_t> DeviceMemory::peak() const {
  if (const auto m = backend_.device_memory()) return m->peak;
  return std::nullopt;
}

void DeviceMemory::reset_peak() {
  backend_.synchronize();
  backend_.reset_device_peak();
}

std::optional<DeviceMemory::Driver> DeviceMemory::driver() const {
  const auto m = backend_.device_memory();
  if (m && m->total > 0 && m->free <= m->total) return Driver{m->total - m->free, m->total};
  return std::nullopt;
}

std::size_t host_peak_rss() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::size_t>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string command_line(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool plain = !a.empty() && a.find_first_of(" \t\"'\\$`") == std::string::npos;
    if (!plain) {
      std::string quoted = "'";
      for (char c : a) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
      a = quoted + "'";
    }
    line += (i ? " " : "") + a;
  }
  return line;
}

}  // namespace fisedit::bench
