#pragma once
// RAII owners of CUDA resources. Destructors never throw (errors at teardown are ignored: the
// device may already be gone); constructors throw fisedit::Error.
#include "backend/cuda/cuda_check.h"

#include <utility>

namespace fisedit::cuda {

template <class Handle, class Destroy>
class UniqueHandle {
public:
  UniqueHandle() = default;
  explicit UniqueHandle(Handle h) : h_(h) {}
  ~UniqueHandle() { reset(); }
  UniqueHandle(UniqueHandle&& o) noexcept : h_(std::exchange(o.h_, Handle{})) {}
  UniqueHandle& operator=(UniqueHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, Handle{});
    }
    return *this;
  }
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;

  Handle get() const { return h_; }
  explicit operator bool() const { return h_ != Handle{}; }
  void reset() {
    if (h_ != Handle{}) Destroy{}(h_);
    h_ = Handle{};
  }

private:
  Handle h_{};
};

struct StreamDestroy { void operator()(cudaStream_t s) const { cudaStreamDestroy(s); } };
struct EventDestroy { void operator()(cudaEvent_t e) const { cudaEventDestroy(e); } };
struct CublasDestroy { void operator()(cublasHandle_t h) const { cublasDestroy(h); } };
struct CublasLtDestroy { void operator()(cublasLtHandle_t h) const { cublasLtDestroy(h); } };
struct CudnnDestroy { void operator()(cudnnHandle_t h) const { cudnnDestroy(h); } };
struct GraphDestroy { void operator()(cudaGraph_t g) const { cudaGraphDestroy(g); } };
struct GraphExecDestroy { void operator()(cudaGraphExec_t g) const { cudaGraphExecDestroy(g); } };

using Stream = UniqueHandle<cudaStream_t, StreamDestroy>;
using Event = UniqueHandle<cudaEvent_t, EventDestroy>;
using CublasHandle = UniqueHandle<cublasHandle_t, CublasDestroy>;
using CublasLtHandle = UniqueHandle<cublasLtHandle_t, CublasLtDestroy>;
using CudnnHandle = UniqueHandle<cudnnHandle_t, CudnnDestroy>;
using Graph = UniqueHandle<cudaGraph_t, GraphDestroy>;
using GraphExec = UniqueHandle<cudaGraphExec_t, GraphExecDestroy>;

inline Stream make_stream() {
  cudaStream_t s{};
  FISEDIT_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return Stream(s);
}

inline Event make_event(unsigned flags = cudaEventDisableTiming) {
  cudaEvent_t e{};
  FISEDIT_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
  return Event(e);
}

}  // namespace fisedit::cuda
