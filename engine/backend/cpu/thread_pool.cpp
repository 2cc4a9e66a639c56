// The CPU backend's thread pool (thread_pool.h): one op's tasks split over workers that sleep between ops.
#include "backend/cpu/thread_pool.h"

#include <cassert>

#ifdef __linux__
#include <sched.h>
#endif

namespace fisedit::cpu {
namespace {

// CPUs this process may run on: a container's or taskset's limit, not the host's core count.
int available_cpus() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

thread_local bool inside_task = false;

}  // namespace

ThreadPool::ThreadPool(int threads) {
  const int count = threads > 0 ? threads : available_cpus();
  for (int t = 1; t < count; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::run(std::int64_t tasks, const Task& task) {
  assert(!inside_task && "ThreadPool::run called from inside a task");
  if (tasks <= 0) return;
  if (workers_.empty() || tasks == 1) {
    for (std::int64_t i = 0; i < tasks; ++i) task(i, 0);
    return;
  }
  {
    std::lock_guard lock(mutex_);
    task_ = &task;
    tasks_ = tasks;
    next_.store(0, std::memory_order_relaxed);
    pending_ = workers_.size();
    ++generation_;
  }
  start_.notify_all();
  work(0);
  // Every worker must have left the job before `task` (a reference into the caller) goes away.
  std::unique_lock lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  task_ = nullptr;
}

void ThreadPool::work(int thread) {
  inside_task = true;
  for (std::int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < tasks_;) (*task_)(i, thread);
  inside_task = false;
}

void ThreadPool::worker_loop(int thread) {
  std::uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    work(thread);
    std::lock_guard lock(mutex_);
    if (--pending_ == 0) done_.notify_one();
  }
}

}  // namespace fisedit::cpu
