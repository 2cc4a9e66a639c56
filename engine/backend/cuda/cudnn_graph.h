#pragma once
// cuDNN's graph (backend) API in small pieces: descriptors owned by RAII handles, attributes set in one
// call, the engine index of a configuration, and the library's own account of its last failure. Shared
// by the convolutions (cuda_conv.cpp) and the fused attention (cuda_attention_cudnn.cpp).
#include "backend/cuda/cuda_resources.h"

#include <cstdint>
#include <string>

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

// What cuDNN says about its last failure on this thread (it names the attribute or the unsupported
// feature, where the status alone says NOT_SUPPORTED), or an empty string.
inline std::string cudnn_last_error() {
  char text[512] = {};
  cudnnGetLastErrorString(text, sizeof(text));
  return text;
}

}  // namespace fisedit::cuda
