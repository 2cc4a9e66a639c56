// GroupNorm (+SiLU, statistics in or out) and LayerNorm on the CUDA backend: fp16 data, float32
// statistics, kernels from kernels/group_norm.cuh and kernels/layer_norm.cuh.
#include "backend/cuda/cuda_state.h"

#include "core/error.h"
#include "group_norm.cuh"
#include "layer_norm.cuh"

#include <cstdint>
#include <string>

namespace fisedit {
namespace {

const std::uint16_t* halves(const DeviceTensor& t) { return t.data_as<const std::uint16_t>(); }

}  // namespace

// x [N, L, C] -> out [N, L, C] (out has x's original shape; only its memory is used). The mean and
// variance come from stats_in, or are computed into stats_out (allocated [N, G] f32 by the caller,
// Backend::group_norm) or into temporaries.
void CudaBackend::group_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                                  int groups, float eps, bool silu, GroupNormStats* stats_out,
                                  const GroupNormStats* stats_in, DeviceTensor& out) {
  const kernels::GroupNormShape shape{x.dim(0), x.dim(1), x.dim(2), groups};
  const cudaStream_t stream = s_->stream.get();
  if (x.numel() == 0) return;
  if (shape.n > 65535 || groups > 65535)
    throw Error(ErrorCode::unsupported, "group_norm: batch " + std::to_string(shape.n) + " or " +
                                            std::to_string(groups) + " groups exceed the CUDA kernel's limit of 65535");

  GroupNormStats computed;
  const GroupNormStats* stats = stats_in;
  if (!stats) {
    if (stats_out) {
      computed = *stats_out;
    } else {
      computed.mean = allocate(DType::f32, {shape.n, groups});
      computed.var = allocate(DType::f32, {shape.n, groups});
    }
    const auto workspace =
        allocate(DType::u8, {static_cast<std::int64_t>(kernels::group_norm_workspace_bytes(shape))});
    FISEDIT_CUDA_CHECK(kernels::group_norm_stats(halves(x), shape, workspace.data_as<float>(),
                                                 computed.mean.data_as<float>(), computed.var.data_as<float>(), stream));
    stats = &computed;
  } else if (stats_out) {
    // Asked for the statistics used while giving them: copy them through.
    FISEDIT_CUDA_CHECK(cudaMemcpyAsync(stats_out->mean.data(), stats_in->mean.data(), stats_in->mean.nbytes(),
                                       cudaMemcpyDeviceToDevice, stream));
    FISEDIT_CUDA_CHECK(cudaMemcpyAsync(stats_out->var.data(), stats_in->var.data(), stats_in->var.nbytes(),
                                       cudaMemcpyDeviceToDevice, stream));
  }
  FISEDIT_CUDA_CHECK(kernels::group_norm_apply(halves(x), halves(gamma), halves(beta),
                                               stats->mean.data_as<const float>(), stats->var.data_as<const float>(),
                                               out.data_as<std::uint16_t>(), shape, eps, silu, stream));
}

// [..., C] -> [..., C]
void CudaBackend::layer_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                                  float eps, DeviceTensor& out) {
  const std::int64_t c = x.dim(-1), rows = c ? x.numel() / c : 0;
  if (rows > 0x7fffffff)
    throw Error(ErrorCode::unsupported,
                "layer_norm: " + std::to_string(rows) + " rows exceed the CUDA kernel's limit of 2^31 - 1");
  FISEDIT_CUDA_CHECK(kernels::layer_norm(halves(x), halves(gamma), halves(beta), out.data_as<std::uint16_t>(), rows,
                                         c, eps, s_->stream.get()));
}

}  // namespace fisedit
