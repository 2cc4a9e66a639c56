#pragma once
// What the CudaBackend's implementation files share. Each op family keeps its fields in its own
// section; the state is created in cuda_backend.cpp.
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_memory.h"
#include "backend/cuda/cuda_resources.h"

#include <cstdint>
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace fisedit {

struct CudaBackend::State {
  int device = 0;
  cudaDeviceProp props{};
  std::shared_ptr<cuda::MemoryPool> pool;
  cuda::Stream stream;

  // Copies beside the computation (cuda_copy.cpp): the activation cache's spill to pinned host memory
  // and its prefetch back. Each copy_async is one batch on the copy stream, ended by an event; the
  // batch holds its tensors until the event has passed, and retired events are reused.
  std::shared_ptr<cuda::MemoryPool> pinned_pool;
  cuda::Stream copy_stream;   // to the device (prefetch)
  cuda::Stream spill_stream;  // to the host (spill)
  cuda::Event compute_mark;   // where a copy stream joins the computation's order
  struct CopyBatch {
    std::uint64_t ticket = 0;
    bool to_host = false;  // on spill_stream
    cuda::Event done;
    std::vector<DeviceTensor> held;  // sources and destinations, alive until `done`
  };
  std::deque<CopyBatch> copies_in_flight;  // oldest first
  std::vector<cuda::Event> spare_events;
  std::uint64_t retired_ticket = 0;  // every batch up to this one is done

  // GEMMs (cuda_gemm.cpp)
  cuda::CublasLtHandle cublas_lt;
  // Strided-batched GEMMs over attention heads (cuda_attention.cpp), bound to `stream`.
  cuda::CublasHandle cublas;
  std::shared_ptr<DeviceBuffer> gemm_workspace;  // allocated by the first GEMM when still empty
  struct GemmPlan;  // descriptors, layouts and the chosen algorithm of one problem (cuda_gemm.cpp)
  // key: G (linear_group's matrices, else 1), M, N, K, bias, and the alignments of x, W and out
  // (cuBLASLt's kernels depend on them)
  using GemmKey = std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, bool, int, int, int>;
  std::map<GemmKey, std::shared_ptr<GemmPlan>> gemm_plans;
  // The algorithm of the first plan made in each range of row counts (M rounded up to a power of
  // two; the rest of the key as gemm_plans'), tried first for the next problem in that range.
  struct GemmAlgo {
    cublasLtMatmulAlgo_t algo;
    bool bias_epilogue;
  };
  std::map<GemmKey, GemmAlgo> gemm_algos;
  std::mutex gemm_algos_mutex;  // gemm_algos is also written by the warmer's thread
  std::uint64_t gemm_heuristic_queries = 0;
  // Looks up the algorithm of every other range of a shape that met the heuristic, on a thread of its
  // own (cuda_gemm.cpp); declared after what it writes, so it stops first.
  struct GemmWarmer;
  std::shared_ptr<GemmWarmer> gemm_warmer;

  // Convolutions (cuda_conv.cpp): cuDNN handle and the algorithm chosen for each problem shape.
  cuda::CudnnHandle cudnn;
  struct ConvChoice {
    int algorithm = 0;  // cudnnConvolutionFwdAlgo_t
    std::size_t workspace_bytes = 0;
    int math_type = 0;  // cudnnMathType_t the algorithm was measured with
  };
  struct ConvPlan;  // cuDNN descriptors of one problem with its ConvChoice (cuda_conv.cpp)
  // key: N, padded H, W and Cin, Cout (padded), kh, kw, stride, symmetric padding h, w
  using ConvKey = std::array<std::int64_t, 10>;
  std::map<ConvKey, std::shared_ptr<ConvPlan>> conv_plans;
  // The cuDNN engine (global index) timed fastest for each convolution "family" (the key without the
  // batch and the spatial size): a new size of a known family takes that engine untimed (an edit's
  // decode crop; its first detection step, the conditional item alone of a generation's CFG batch).
  using ConvFamily = std::array<std::int64_t, 7>;
  std::map<ConvFamily, std::int64_t> conv_engines;
  std::uint64_t conv_problems_timed = 0;  // problems whose candidates were timed (tests read it)

  // Fused attention (cuda_attention_cudnn.cpp): cuDNN's plan per shape, or an empty one where cuDNN
  // offers none (that shape then takes kernels/attention).
  struct AttentionPlan;
  // key: batch, heads, Lq, Lk, head width, the scale's bits
  using AttentionKey = std::array<std::int64_t, 6>;
  std::map<AttentionKey, std::shared_ptr<AttentionPlan>> attention_plans;
  std::optional<CudaBackend::AttentionRoute> attention_route;  // set by a test; else the environment's
  CudaBackend::AttentionCudnnCounters attention_cudnn;

  // Profiling (cuda_profile.cpp): an event pair per timed op, read when the profile is reported.
  struct TimedOp {
    std::string op;
    cuda::Event begin, end;
  };
  std::vector<TimedOp> timed_ops;
  cuda::Event pending_begin;
  // Timeline marks (Backend::mark): an event each, read when taken.
  struct TimedMark {
    std::string name;
    cuda::Event event;
  };
  std::vector<TimedMark> marks;
  std::shared_ptr<DeviceBuffer> conv_workspace;    // grown to the largest chosen algorithm's need
};

}  // namespace fisedit
