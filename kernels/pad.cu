// Zero padding of an NHWC tensor in space and channels (pad.cuh).
#include "pad.cuh"
#include "launch.cuh"

#include <cstddef>

namespace fisedit::kernels {
namespace {

constexpr int kThreads = 256;

// One thread per `T`-sized group of channels: T = uint4 moves 8 halves when both channel counts
// are multiples of 8 and both pointers 16-byte aligned, T = uint16_t one half otherwise.
template <class T>
__global__ void pad_nhwc_kernel(PadNhwcArgs a, std::int64_t in_groups, std::int64_t out_groups, std::size_t total) {
  dependent_prologue();
  const T* in = reinterpret_cast<const T*>(a.in);
  T* out = reinterpret_cast<T*>(a.out);
  for (std::size_t i = blockIdx.x * std::size_t{blockDim.x} + threadIdx.x; i < total;
       i += std::size_t{gridDim.x} * blockDim.x) {
    const auto idx = static_cast<std::int64_t>(i);
    const std::int64_t g = idx % out_groups, pixel = idx / out_groups;
    const std::int64_t x = pixel % a.out_w, y = pixel / a.out_w % a.out_h, b = pixel / (a.out_w * a.out_h);
    const std::int64_t iy = y - a.pad_top, ix = x - a.pad_left;
    T value{};
    if (g < in_groups && iy >= 0 && iy < a.h && ix >= 0 && ix < a.w) value = in[((b * a.h + iy) * a.w + ix) * in_groups + g];
    out[i] = value;
  }
}


}  // namespace

cudaError_t pad_nhwc(const PadNhwcArgs& a, cudaStream_t stream) {
  if (a.n < 0 || a.h < 0 || a.w < 0 || a.c < 0 || a.out_h < 0 || a.out_w < 0 || a.out_c < 0) return cudaErrorInvalidValue;
  const std::int64_t pixels = a.n * a.out_h * a.out_w;
  if (pixels == 0 || a.out_c == 0) return cudaSuccess;
  const bool vec = a.c % 8 == 0 && a.out_c % 8 == 0 && reinterpret_cast<std::uintptr_t>(a.in) % 16 == 0 &&
                   reinterpret_cast<std::uintptr_t>(a.out) % 16 == 0;
  if (vec) {
    const auto total = static_cast<std::size_t>(pixels * (a.out_c / 8));
    launch_kernel(pad_nhwc_kernel<uint4>, blocks_for(total), kThreads, 0, stream, a, a.c / 8, a.out_c / 8, total);
  } else {
    const auto total = static_cast<std::size_t>(pixels * a.out_c);
    launch_kernel(pad_nhwc_kernel<std::uint16_t>, blocks_for(total), kThreads, 0, stream, a, a.c, a.out_c, total);
  }
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
