// Op-level profiling on the device: events around each outermost op, read when reported, so the
// stream never waits while a profiled run is under way.
#include "backend/cuda/cuda_state.h"

#include <cuda_profiler_api.h>

#include <utility>

namespace fisedit {

void CudaBackend::external_profiler(bool on) {
  FISEDIT_CUDA_CHECK(cudaStreamSynchronize(s_->stream.get()));
  FISEDIT_CUDA_CHECK(on ? cudaProfilerStart() : cudaProfilerStop());
}

void CudaBackend::profile_begin() {
  s_->pending_begin = cuda::make_event(cudaEventDefault);
  FISEDIT_CUDA_CHECK(cudaEventRecord(s_->pending_begin.get(), s_->stream.get()));
}

void CudaBackend::profile_end(const char* op) {
  auto end = cuda::make_event(cudaEventDefault);
  FISEDIT_CUDA_CHECK(cudaEventRecord(end.get(), s_->stream.get()));
  s_->timed_ops.push_back({op, std::move(s_->pending_begin), std::move(end)});
}

std::vector<Backend::OpTime> CudaBackend::profile_collect() {
  std::map<std::string, OpTime> totals;
  for (const auto& t : s_->timed_ops) {
    float ms = 0.0f;
    FISEDIT_CUDA_CHECK(cudaEventElapsedTime(&ms, t.begin.get(), t.end.get()));
    auto& total = totals[t.op];
    total.op = t.op;
    ++total.calls;
    total.total_ms += ms;
  }
  s_->timed_ops.clear();
  std::vector<OpTime> out;
  for (auto& [name, t] : totals) out.push_back(t);
  return out;
}

void CudaBackend::mark_impl(const char* name) {
  auto event = cuda::make_event(cudaEventDefault);
  FISEDIT_CUDA_CHECK(cudaEventRecord(event.get(), s_->stream.get()));
  s_->marks.push_back({name, std::move(event)});
}

std::vector<Backend::Mark> CudaBackend::take_marks_impl() {
  auto marks = std::exchange(s_->marks, {});
  std::vector<Mark> out;
  if (marks.empty()) return out;
  FISEDIT_CUDA_CHECK(cudaEventSynchronize(marks.back().event.get()));
  out.reserve(marks.size());
  for (const auto& m : marks) {
    float ms = 0.0f;
    FISEDIT_CUDA_CHECK(cudaEventElapsedTime(&ms, marks.front().event.get(), m.event.get()));
    out.push_back({m.name, ms});
  }
  return out;
}

}  // namespace fisedit
