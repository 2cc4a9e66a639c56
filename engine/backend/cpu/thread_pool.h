#pragma once
// The CPU backend's one pool of threads. Workers sleep on a condition variable between jobs instead
// of spinning: on the small shared machines this backend serves (CI has 2 cores and runs tests two
// at a time), spinning OpenMP workers next to OpenBLAS's own threads made the VAE test over 10x slower.
// OpenBLAS therefore runs single-threaded and GEMMs are split over this pool too.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fisedit::cpu {

class ThreadPool {
public:
  // A task: index in [0, tasks), and the running thread's index in [0, size()) (for scratch memory).
  using Task = std::function<void(std::int64_t index, int thread)>;

  // `threads` counts the calling thread; 0 means one per CPU this process may run on.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs task(i, thread) for every i in [0, tasks) on all threads, the caller included, and returns
  // when all are done. Tasks must not throw and must not call run() themselves.
  void run(std::int64_t tasks, const Task& task);

private:
  void worker_loop(int thread);
  void work(int thread);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_, done_;
  const Task* task_ = nullptr;
  std::int64_t tasks_ = 0;
  std::atomic<std::int64_t> next_{0};  // the next task to hand out
  std::size_t pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

// Runs f(i) for i in [0, n) in contiguous ranges over the pool when the loop is worth it: `cost` is
// the number of element operations per item, and waking the workers costs about what ~100k save.
template <class F>
void parallel_for(ThreadPool& pool, std::int64_t n, std::int64_t cost, F&& f) {
  const std::int64_t threads = pool.size();
  if (threads == 1 || n < 2 || n * cost < (std::int64_t{1} << 17)) {
    for (std::int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  // A few ranges per thread even out threads the OS delays.
  const std::int64_t ranges = std::min(n, 4 * threads);
  pool.run(ranges, [&](std::int64_t r, int) {
    const std::int64_t end = n * (r + 1) / ranges;
    for (std::int64_t i = n * r / ranges; i < end; ++i) f(i);
  });
}

}  // namespace fisedit::cpu
