#pragma once
// cuDNN's graph (backend) API in small pieces: descriptors owned by RAII handles, attributes set in one
// call, the engine index of a configuration, and the library's own account of its last failure. Shared
// by the convolutions (cuda_conv.cpp) and the fused attention (cuda_attention_cudnn.cpp).
#include "backend/cuda/cuda_resources.h"

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fisedit::cuda {

struct BackendDestroy {
  void operator()(cudnnBackendDescriptor_t d) const { cudnnBackendDestroyDescriptor(d); }
};
using BackendDesc = UniqueHandle<cudnnBackendDescriptor_t, BackendDestroy>;

inline BackendDesc make_backend(cudnnBackendDescriptorType_t type) {
  cudnnBackendDescriptor_t d{};
  FISEDIT_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d));
  return BackendDesc(d);
}

template <class T>
void set_attr(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
              std::int64_t count, const T* values) {
  FISEDIT_CUDNN_CHECK(cudnnBackendSetAttribute(d, name, type, count, values));
}

// The global index of an engine configuration's engine, or -1 when cuDNN does not say.
inline std::int64_t engine_index(cudnnBackendDescriptor_t config) {
  auto engine = make_backend(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t raw = engine.get();
  std::int64_t count = 0, index = -1;
  if (cudnnBackendGetAttribute(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count, &raw) !=
          CUDNN_STATUS_SUCCESS ||
      count != 1)
    return -1;
  if (cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &count, &index) !=
          CUDNN_STATUS_SUCCESS ||
      count != 1)
    return -1;
  return index;
}

// The first `most` engine configurations cuDNN's heuristic (mode A) offers for a finalized operation
// graph, best first (none when it offers none).
inline std::vector<BackendDesc> heuristic_configs(cudnnBackendDescriptor_t graph, std::int64_t most) {
  auto heuristics = make_backend(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  set_attr(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
  set_attr(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(heuristics.get()));
  std::int64_t available = 0;
  FISEDIT_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &available, nullptr));
  const std::int64_t wanted = std::min(available, most);
  std::vector<BackendDesc> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (std::int64_t i = 0; i < wanted; ++i) {
    configs.push_back(make_backend(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(configs.back().get());
  }
  std::int64_t returned = 0;
  if (wanted > 0)
    FISEDIT_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, wanted, &returned, raw.data()));
  configs.resize(static_cast<std::size_t>(std::max<std::int64_t>(returned, 0)));
  return configs;
}

// An execution plan of one engine configuration, with its workspace; an empty plan and cuDNN's
// status when the configuration does not take the graph.
struct ExecutionPlan {
  BackendDesc plan;
  std::int64_t workspace_bytes = 0;
  cudnnStatus_t status = CUDNN_STATUS_SUCCESS;
};
inline ExecutionPlan execution_plan(cudnnHandle_t cudnn, cudnnBackendDescriptor_t config) {
  ExecutionPlan made;
  auto plan = make_backend(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  set_attr(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &cudnn);
  set_attr(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &config);
  made.status = cudnnBackendFinalize(plan.get());
  if (made.status != CUDNN_STATUS_SUCCESS) return made;
  std::int64_t got = 0;
  FISEDIT_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                                               1, &got, &made.workspace_bytes));
  made.plan = std::move(plan);
  return made;
}

// Runs `plan` once on the handle's stream with the tensors `uids[i]` at `pointers[i]` and `workspace`
// (null when the plan needs none): cuDNN's status, for the caller to check or act on.
inline cudnnStatus_t execute(cudnnHandle_t cudnn, cudnnBackendDescriptor_t plan, std::span<const std::int64_t> uids,
                             std::span<void* const> pointers, void* workspace) {
  auto pack = make_backend(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  const auto count = static_cast<std::int64_t>(uids.size());
  set_attr(pack.get(), CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, count, pointers.data());
  set_attr(pack.get(), CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, count, uids.data());
  set_attr(pack.get(), CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(pack.get()));
  return cudnnBackendExecute(cudnn, plan, pack.get());
}

// What cuDNN says about its last failure on this thread (it names the attribute or the unsupported
// feature, where the status alone says NOT_SUPPORTED), or an empty string.
inline std::string cudnn_last_error() {
  char text[512] = {};
  cudnnGetLastErrorString(text, sizeof(text));
  return text;
}

}  // namespace fisedit::cuda
