// The CUDA backend's ops for sparse editing.
#include "backend/cuda/cuda_state.h"
#include "select_positions.cuh"

namespace fisedit {

void CudaBackend::select_positions_impl(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b,
                                        DeviceTensor& out) {
  const std::int64_t positions = mask.numel(), channels = a.dim(-1);
  kernels::SelectPositionsParams p{mask.data_as<const __half>(), a.data_as<const __half>(), b.data_as<const __half>(),
                                   out.data_as<__half>(), a.numel() / (positions * channels), positions, channels};
  FISEDIT_CUDA_CHECK(kernels::select_positions(p, s_->stream.get()));
}

}  // namespace fisedit
