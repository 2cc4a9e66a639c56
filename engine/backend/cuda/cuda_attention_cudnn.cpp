// Attention through cuDNN's fused flash attention: softmax(scale q k^T) v described to cuDNN's graph
// API as the operations it fuses (the scores' matrix product, the scale, the softmax as maximum,
// subtraction, exponent, sum and division, the product with the values), one execution plan per shape.
// On Hopper cuDNN runs this graph as one warp-specialised tensor-core kernel (wgmma, TMA loads), where
// kernels/attention_flash2 uses Ampere's mma.sync: the U-Net's large self-attentions (9216 x 9216 at
// SD2 768) are the dense step's largest op.
//
// The scores, their softmax and the output accumulate in float32 (SD2's "upcast attention" is always
// in effect, as in kernels/attention); the probabilities meet the values as fp16, as there. Heads sit
// side by side in the channels ([B, L, heads * D]): cuDNN takes that layout through strides, so
// nothing is transposed.
//
// Off by default until a GPU run has checked it against kernels/attention and timed it (it was
// written in a session that got no GPU: tests/gpu/attention.sh is the run); FISEDIT_ATTENTION_CUDNN=auto
// turns it on as described below.
//
// Where it runs (CudaBackend::AttentionRoute): cuDNN takes fp16, no causal mask, head widths that are
// multiples of 8 up to 256, 16-byte aligned tensors. Automatic routing also asks that the query tiles
// (128 rows) of all batch items and heads fill the device: a sparse edit's few queries against every
// key stay with flash2, which splits the keys across blocks. The plan of a shape is made once, untimed
// (the first configuration cuDNN's heuristic offers that finalizes), so a step recorded into a graph
// and the same step run op by op take the same plan; a shape cuDNN refuses is remembered and runs on
// kernels/attention.
#include "backend/cuda/cuda_state.h"
#include "backend/cuda/cudnn_graph.h"
#include "core/env.h"

#include "launch.cuh"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <vector>

namespace fisedit {
namespace {

using cuda::BackendDesc;
using cuda::make_backend;
using cuda::set_attr;

// Tensor ids: the variant pack's five, then the graph's virtual tensors.
enum : std::int64_t {
  kUidQ = 1,
  kUidK,
  kUidV,
  kUidO,
  kUidScale,
  kUidScores = 10,
  kUidScaled,
  kUidMax,
  kUidCentred,
  kUidExp,
  kUidSum,
  kUidProbs,
};

constexpr std::int64_t kQueryTile = 128;  // rows of queries per block of cuDNN's Hopper kernel

using Dims = std::array<std::int64_t, 4>;

BackendDesc tensor(std::int64_t uid, const Dims& dims, const Dims& strides, cudnnDataType_t dtype, bool is_virtual,
                   bool by_value = false) {
  auto t = make_backend(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const std::int64_t alignment = 16;
  set_attr(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dtype);
  set_attr(t.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
  set_attr(t.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
  set_attr(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set_attr(t.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  if (is_virtual) set_attr(t.get(), CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
  if (by_value) set_attr(t.get(), CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(t.get()));
  return t;
}

// The operations of one graph and what they refer to (descriptors must outlive the graph's finalize).
struct OpGraph {
  std::vector<BackendDesc> keep;  // tensors and operator descriptors
  std::vector<BackendDesc> ops;

  cudnnBackendDescriptor_t hold(BackendDesc d) {
    keep.push_back(std::move(d));
    return keep.back().get();
  }

  using Link = std::pair<cudnnBackendAttributeName_t, cudnnBackendDescriptor_t>;

  // A finalized operation of `type` whose attributes name the given descriptors (null ones skipped).
  void operation(cudnnBackendDescriptorType_t type, std::initializer_list<Link> links) {
    auto op = make_backend(type);
    for (auto [name, d] : links)
      if (d) set_attr(op.get(), name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d);
    FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(op.get()));
    ops.push_back(std::move(op));
  }

  // A finalized operator descriptor of `type` computing in float32 (the attribute `compute_name`),
  // with whatever else `set` sets on it (its mode).
  template <class Set>
  cudnnBackendDescriptor_t operator_descriptor(cudnnBackendDescriptorType_t type,
                                               cudnnBackendAttributeName_t compute_name, Set set) {
    auto desc = make_backend(type);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    set_attr(desc.get(), compute_name, CUDNN_TYPE_DATA_TYPE, 1, &compute);
    set(desc.get());
    FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(desc.get()));
    return hold(std::move(desc));
  }

  void matmul(cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b, cudnnBackendDescriptor_t c) {
    const auto d = operator_descriptor(CUDNN_BACKEND_MATMUL_DESCRIPTOR, CUDNN_ATTR_MATMUL_COMP_TYPE,
                                       [](cudnnBackendDescriptor_t) {});
    operation(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR,
              {{CUDNN_ATTR_OPERATION_MATMUL_ADESC, a}, {CUDNN_ATTR_OPERATION_MATMUL_BDESC, b},
               {CUDNN_ATTR_OPERATION_MATMUL_CDESC, c}, {CUDNN_ATTR_OPERATION_MATMUL_DESC, d}});
  }

  // y = x (mode) b, or y = mode(x) when b is null.
  void pointwise(cudnnPointwiseMode_t mode, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                 cudnnBackendDescriptor_t y) {
    const auto d = operator_descriptor(
        CUDNN_BACKEND_POINTWISE_DESCRIPTOR, CUDNN_ATTR_POINTWISE_MATH_PREC, [&](cudnnBackendDescriptor_t desc) {
          set_attr(desc, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
        });
    operation(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR,
              {{CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, d}, {CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x},
               {CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b}, {CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y}});
  }

  void reduction(cudnnReduceTensorOp_t reduce, cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    const auto d = operator_descriptor(
        CUDNN_BACKEND_REDUCTION_DESCRIPTOR, CUDNN_ATTR_REDUCTION_COMP_TYPE, [&](cudnnBackendDescriptor_t desc) {
          set_attr(desc, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce);
        });
    operation(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR,
              {{CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x}, {CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y},
               {CUDNN_ATTR_OPERATION_REDUCTION_DESC, d}});
  }
};

struct AttentionShape {
  std::int64_t batch, heads, lq, lk, d;
};

// The attention graph of one shape, finalized against `cudnn`.
BackendDesc attention_graph(cudnnHandle_t cudnn, const AttentionShape& s, OpGraph& g) {
  const std::int64_t b = s.batch, h = s.heads, sq = s.lq, sk = s.lk, d = s.d, c = h * d;
  // [B, heads, L, D] over memory laid out [B, L, heads * D]; the keys as K^T [B, heads, D, Lk].
  const auto q = g.hold(tensor(kUidQ, {b, h, sq, d}, {sq * c, d, c, 1}, CUDNN_DATA_HALF, false));
  const auto kt = g.hold(tensor(kUidK, {b, h, d, sk}, {sk * c, d, 1, c}, CUDNN_DATA_HALF, false));
  const auto v = g.hold(tensor(kUidV, {b, h, sk, d}, {sk * c, d, c, 1}, CUDNN_DATA_HALF, false));
  const auto o = g.hold(tensor(kUidO, {b, h, sq, d}, {sq * c, d, c, 1}, CUDNN_DATA_HALF, false));
  const auto scale = g.hold(tensor(kUidScale, {1, 1, 1, 1}, {1, 1, 1, 1}, CUDNN_DATA_FLOAT, false, true));
  const Dims scores_dims{b, h, sq, sk}, scores_strides{h * sq * sk, sq * sk, sk, 1};
  const Dims row_dims{b, h, sq, 1}, row_strides{h * sq, sq, 1, 1};
  const auto scores = g.hold(tensor(kUidScores, scores_dims, scores_strides, CUDNN_DATA_FLOAT, true));
  const auto scaled = g.hold(tensor(kUidScaled, scores_dims, scores_strides, CUDNN_DATA_FLOAT, true));
  const auto row_max = g.hold(tensor(kUidMax, row_dims, row_strides, CUDNN_DATA_FLOAT, true));
  const auto centred = g.hold(tensor(kUidCentred, scores_dims, scores_strides, CUDNN_DATA_FLOAT, true));
  const auto exps = g.hold(tensor(kUidExp, scores_dims, scores_strides, CUDNN_DATA_FLOAT, true));
  const auto row_sum = g.hold(tensor(kUidSum, row_dims, row_strides, CUDNN_DATA_FLOAT, true));
  const auto probs = g.hold(tensor(kUidProbs, scores_dims, scores_strides, CUDNN_DATA_HALF, true));

  g.matmul(q, kt, scores);
  g.pointwise(CUDNN_POINTWISE_MUL, scores, scale, scaled);
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, scaled, row_max);
  g.pointwise(CUDNN_POINTWISE_SUB, scaled, row_max, centred);
  g.pointwise(CUDNN_POINTWISE_EXP, centred, nullptr, exps);
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, row_sum);
  g.pointwise(CUDNN_POINTWISE_DIV, exps, row_sum, probs);
  g.matmul(probs, v, o);

  auto graph = make_backend(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  std::vector<cudnnBackendDescriptor_t> ops;
  for (const auto& op : g.ops) ops.push_back(op.get());
  set_attr(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
           static_cast<std::int64_t>(ops.size()), ops.data());
  set_attr(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &cudnn);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(graph.get()));
  return graph;
}

// FISEDIT_ATTENTION_CUDNN, read once: the route a backend starts with.
CudaBackend::AttentionRoute route_from_environment() {
  static const CudaBackend::AttentionRoute route = [] {
    const char* env = std::getenv("FISEDIT_ATTENTION_CUDNN");
    if (!env || !*env || std::strcmp(env, "off") == 0) return CudaBackend::AttentionRoute::kernels;
    if (std::strcmp(env, "auto") == 0) return CudaBackend::AttentionRoute::automatic;
    if (std::strcmp(env, "on") == 0) return CudaBackend::AttentionRoute::cudnn;
    std::fprintf(stderr, "fisedit: FISEDIT_ATTENTION_CUDNN=%s is not one of off, auto, on; using off\n", env);
    return CudaBackend::AttentionRoute::kernels;
  }();
  return route;
}

// FISEDIT_ATTENTION_CUDNN_LOG=1: each plan made or refused, on stderr (diagnostics).
bool log_plans() {
  static const bool on = env_flag("FISEDIT_ATTENTION_CUDNN_LOG", false);
  return on;
}

std::string describe(const AttentionShape& s) {
  return "[" + std::to_string(s.batch) + ", " + std::to_string(s.heads) + " heads, " + std::to_string(s.lq) + " x " +
         std::to_string(s.lk) + ", D " + std::to_string(s.d) + "]";
}

std::int64_t scale_bits(float scale) {
  std::uint32_t bits = 0;
  std::memcpy(&bits, &scale, sizeof(bits));
  return bits;
}

}  // namespace

struct CudaBackend::State::AttentionPlan {
  BackendDesc plan;  // empty: cuDNN offers none for this shape
  std::size_t workspace_bytes = 0;
};

void CudaBackend::set_attention_route(std::optional<AttentionRoute> route) { s_->attention_route = route; }

CudaBackend::AttentionCudnnCounters CudaBackend::attention_cudnn_counters() const { return s_->attention_cudnn; }

bool CudaBackend::attention_cudnn(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                                  const AttentionParams& params, DeviceTensor& out) {
  const AttentionRoute route = s_->attention_route.value_or(route_from_environment());
  if (route == AttentionRoute::kernels) return false;
  const AttentionShape shape{q.dim(0), params.heads, q.dim(1), k.dim(1), q.dim(2) / params.heads};
  if (q.dtype() != DType::f16 || params.causal || shape.d % 8 != 0 || shape.d > 256 ||
      !(std::isfinite(params.scale) && params.scale > 0.0f))
    return false;
  for (const DeviceTensor* t : std::array<const DeviceTensor*, 4>{&q, &k, &v, &out})
    if (!kernels::aligned16(t->data())) return false;
  if (route == AttentionRoute::automatic &&
      (shape.lq + kQueryTile - 1) / kQueryTile * shape.batch * shape.heads < s_->props.multiProcessorCount)
    return false;

  const cudnnHandle_t cudnn = s_->cudnn.get();
  const State::AttentionKey key{shape.batch, shape.heads, shape.lq, shape.lk, shape.d, scale_bits(params.scale)};
  auto found = s_->attention_plans.find(key);
  if (found == s_->attention_plans.end()) {
    auto made = std::make_shared<State::AttentionPlan>();
    const auto start = std::chrono::steady_clock::now();
    std::string refusal;
    try {
      OpGraph ops;
      const auto graph = attention_graph(cudnn, shape, ops);
      const auto configs = cuda::heuristic_configs(graph.get(), 8);
      if (configs.empty()) refusal = "no engine for the graph (" + cuda::cudnn_last_error() + ")";
      for (const auto& config : configs) {
        auto plan = cuda::execution_plan(cudnn, config.get());
        if (!plan.plan) {
          refusal = std::string("no configuration finalized (") + cudnnGetErrorString(plan.status) + ": " +
                    cuda::cudnn_last_error() + ")";
          continue;
        }
        made->workspace_bytes = static_cast<std::size_t>(std::max<std::int64_t>(plan.workspace_bytes, 0));
        made->plan = std::move(plan.plan);
        break;
      }
    } catch (const Error& e) {
      if (e.code() == ErrorCode::out_of_memory) throw;
      refusal = std::string(e.what()) + " (" + cuda::cudnn_last_error() + ")";
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    auto& counters = s_->attention_cudnn;
    counters.plan_ms += ms;
    const std::string what = describe(shape);
    if (made->plan) {
      ++counters.plans;
      if (log_plans())
        std::fprintf(stderr, "fisedit: cuDNN attention %s: plan in %.1f ms, workspace %zu bytes\n", what.c_str(), ms,
                     made->workspace_bytes);
    } else {
      ++counters.refused;
      counters.last_refusal = what + ": " + refusal;
      if (log_plans()) std::fprintf(stderr, "fisedit: cuDNN attention %s refused: %s\n", what.c_str(), refusal.c_str());
    }
    found = s_->attention_plans.emplace(key, std::move(made)).first;
  }
  State::AttentionPlan& plan = *found->second;
  if (!plan.plan) return false;

  // The workspace, if the plan wants one, from the pool like any temporary (stream order keeps its next
  // user behind this call).
  const DeviceTensor workspace = plan.workspace_bytes
                                     ? allocate(DType::u8, {static_cast<std::int64_t>(plan.workspace_bytes)})
                                     : DeviceTensor();
  float scale = params.scale;  // by value: read when the call is enqueued
  const auto pointer = [](const DeviceTensor& t) { return const_cast<void*>(static_cast<const void*>(t.data())); };
  void* const pointers[5] = {pointer(q), pointer(k), pointer(v), pointer(out), &scale};
  const std::int64_t uids[5] = {kUidQ, kUidK, kUidV, kUidO, kUidScale};
  // A plan cuDNN made but cannot run (an engine that refuses these pointers, a launch it cannot make):
  // that shape goes to kernels/attention from now on, this call included, rather than failing the step.
  if (const cudnnStatus_t status = cuda::execute(cudnn, plan.plan.get(), uids, pointers,
                                                 workspace.numel() ? workspace.data() : nullptr);
      status != CUDNN_STATUS_SUCCESS) {
    auto& counters = s_->attention_cudnn;
    ++counters.refused;
    counters.last_refusal = describe(shape) + ": execution failed (" + cudnnGetErrorString(status) + ": " +
                            cuda::cudnn_last_error() + ")";
    if (log_plans()) std::fprintf(stderr, "fisedit: cuDNN attention %s\n", counters.last_refusal.c_str());
    plan.plan.reset();
    return false;
  }
  ++s_->attention_cudnn.calls;
  return true;
}

}  // namespace fisedit
