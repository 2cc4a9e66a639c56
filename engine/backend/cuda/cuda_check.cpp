// CUDA, cuBLAS and cuDNN failures turned into fisedit::Error naming the call and its site (cuda_check.h).
#include "backend/cuda/cuda_check.h"

#include <filesystem>

namespace fisedit::cuda {
namespace {

std::string where(const char* call, const char* file, int line) {
  return std::string(call) + " at " + std::filesystem::path(file).filename().string() + ":" + std::to_string(line);
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  cudaGetLastError();  // clear the sticky-free error state so the next call starts clean
  const ErrorCode code = status == cudaErrorMemoryAllocation ? ErrorCode::out_of_memory : ErrorCode::device;
  throw Error(code, std::string("CUDA: ") + cudaGetErrorString(status) +
                        (code == ErrorCode::out_of_memory ? " (free GPU memory, or use a smaller size)" : "") + " in " +
                        where(call, file, line));
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const ErrorCode code = status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::out_of_memory : ErrorCode::device;
  throw Error(code, std::string("cuBLAS: ") + cublasGetStatusString(status) + " in " + where(call, file, line));
}

void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file, int line) {
  const ErrorCode code = status == CUDNN_STATUS_ALLOC_FAILED ? ErrorCode::out_of_memory : ErrorCode::device;
  throw Error(code, std::string("cuDNN: ") + cudnnGetErrorString(status) + " in " + where(call, file, line));
}

}  // namespace fisedit::cuda
