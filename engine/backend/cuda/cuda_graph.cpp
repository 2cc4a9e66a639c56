// Recorded work (Backend::record): the ops a body queues, captured from the stream into a CUDA graph
// and replayed with one launch, and the batched copies that refresh a recording's inputs. The memory
// pool holds every block the body allocates or frees for as long as the recording lives (the graph's
// kernels keep their addresses), and the profiler is off while recording (Backend::record).
#include "backend/cuda/cuda_state.h"

#include "batched_copy.cuh"

#include <vector>

namespace fisedit {
namespace {

class CudaRecording final : public Backend::Recording {
public:
  CudaRecording(cudaGraphExec_t exec, cudaStream_t stream, std::shared_ptr<cuda::MemoryPool::Hold> hold)
      : exec_(exec), stream_(stream), hold_(std::move(hold)) {}
  ~CudaRecording() override {
    // The last replay may still run: the graph's memory goes back to the pool, whose next users are
    // ordered after it on the same stream. Destroying an executable graph in flight is allowed.
    cudaGraphExecDestroy(exec_);
  }
  CudaRecording(const CudaRecording&) = delete;
  CudaRecording& operator=(const CudaRecording&) = delete;

  void replay() override { FISEDIT_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
  std::shared_ptr<cuda::MemoryPool::Hold> hold_;
};

// Ends a capture that failed and clears the error it left, so the next call starts clean.
void abandon_capture(cudaStream_t stream) {
  cudaGraph_t graph = nullptr;
  cudaStreamEndCapture(stream, &graph);
  if (graph) cudaGraphDestroy(graph);
  cudaGetLastError();
}

}  // namespace

std::unique_ptr<Backend::Recording> CudaBackend::record_impl(const std::function<void()>& body, std::string* why) {
  const cudaStream_t stream = s_->stream.get();
  auto hold = s_->pool->begin_hold();
  struct EndHold {
    cuda::MemoryPool& pool;
    ~EndHold() { pool.end_hold(); }
  } end_hold{*s_->pool};
  // Relaxed: the pool may still ask the driver for memory while the ops are captured.
  FISEDIT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  try {
    body();
  } catch (const Error& e) {
    abandon_capture(stream);
    if (why) *why = e.what();
    return nullptr;
  } catch (...) {
    abandon_capture(stream);
    throw;
  }
  cudaGraph_t graph = nullptr;
  cudaError_t status = cudaStreamEndCapture(stream, &graph);
  if (status != cudaSuccess || !graph) {
    cudaGetLastError();
    if (graph) cudaGraphDestroy(graph);
    if (why) *why = std::string("the device refused the recording: ") + cudaGetErrorString(status);
    return nullptr;
  }
  cudaGraphExec_t exec = nullptr;
  status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (status != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = std::string("the recording could not be instantiated: ") + cudaGetErrorString(status);
    return nullptr;
  }
  return std::make_unique<CudaRecording>(exec, stream, std::move(hold));
}

void CudaBackend::copy_into_impl(std::span<const TensorCopy> copies) {
  std::vector<kernels::CopySpan> spans;
  spans.reserve(copies.size());
  for (const auto& c : copies)
    if (c.src.nbytes() > 0 && c.src.data() != c.dst.data()) spans.push_back({c.src.data(), c.dst.data(), c.src.nbytes()});
  FISEDIT_CUDA_CHECK(kernels::batched_copy(spans.data(), spans.size(), s_->stream.get()));
}

}  // namespace fisedit
