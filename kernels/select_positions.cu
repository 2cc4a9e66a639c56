// Sparse editing's blend kernel (select_positions.cuh): per position the new row or the cached one.
#include "select_positions.cuh"
#include "launch.cuh"

#include <algorithm>

namespace fisedit::kernels {
namespace {

// One thread per 8 channels (16 bytes) when the channel count allows, else per channel.
template <int kVector>
__global__ void select_positions_kernel(SelectPositionsParams p) {
  dependent_prologue();
  const std::int64_t vectors_per_row = p.channels / kVector;
  const std::int64_t total = p.batch * p.positions * vectors_per_row;
  for (std::int64_t i = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; i < total;
       i += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t row = i / vectors_per_row;
    const bool take_a = __half2float(p.mask[row % p.positions]) != 0.0f;
    const __half* src = (take_a ? p.a : p.b) + i * kVector;
    if constexpr (kVector == 8) {
      reinterpret_cast<uint4*>(p.out)[i] = *reinterpret_cast<const uint4*>(src);
    } else {
      p.out[i] = *src;
    }
  }
}

}  // namespace

cudaError_t select_positions(const SelectPositionsParams& p, cudaStream_t stream) {
  const bool vectorised = p.channels % 8 == 0 && reinterpret_cast<std::uintptr_t>(p.a) % 16 == 0 &&
                          reinterpret_cast<std::uintptr_t>(p.b) % 16 == 0 && reinterpret_cast<std::uintptr_t>(p.out) % 16 == 0;
  const std::int64_t items = p.batch * p.positions * (vectorised ? p.channels / 8 : p.channels);
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((items + threads - 1) / threads, 65535 * 8));
  if (items == 0) return cudaSuccess;
  if (vectorised)
    launch_kernel(select_positions_kernel<8>, blocks, threads, 0, stream, p);
  else
    launch_kernel(select_positions_kernel<1>, blocks, threads, 0, stream, p);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
