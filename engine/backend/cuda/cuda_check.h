#pragma once
// Turning CUDA, cuBLAS and cuDNN status codes into fisedit::Error with the call site, never an abort.
// Out-of-memory statuses become ErrorCode::out_of_memory so the UI can say "free memory or use a
// smaller size"; everything else is ErrorCode::device.
#include "core/error.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

namespace fisedit::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line);

}  // namespace fisedit::cuda

#define FISEDIT_CUDA_CHECK(call)                                                              \
  do {                                                                                        \
    const cudaError_t fisedit_status_ = (call);                                               \
    if (fisedit_status_ != cudaSuccess)                                                       \
      ::fisedit::cuda::throw_cuda_error(fisedit_status_, #call, __FILE__, __LINE__);          \
  } while (0)

#define FISEDIT_CUBLAS_CHECK(call)                                                            \
  do {                                                                                        \
    const cublasStatus_t fisedit_status_ = (call);                                            \
    if (fisedit_status_ != CUBLAS_STATUS_SUCCESS)                                             \
      ::fisedit::cuda::throw_cublas_error(fisedit_status_, #call, __FILE__, __LINE__);        \
  } while (0)

#define FISEDIT_CUDNN_CHECK(call)                                                             \
  do {                                                                                        \
    const cudnnStatus_t fisedit_status_ = (call);                                             \
    if (fisedit_status_ != CUDNN_STATUS_SUCCESS)                                              \
      ::fisedit::cuda::throw_cudnn_error(fisedit_status_, #call, __FILE__, __LINE__);         \
  } while (0)
