// Batched device-to-device copies: blockIdx.y picks the span, the x blocks stride over its bytes.
#include "batched_copy.cuh"
#include "launch.cuh"

#include <algorithm>
#include <cstdint>

namespace fisedit::kernels {
namespace {

struct CopySpans {
  CopySpan span[kCopySpansPerLaunch];
};

__global__ void batched_copy_kernel(const CopySpans spans) {
  dependent_prologue();
  const CopySpan c = spans.span[blockIdx.y];
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t first = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const auto src = reinterpret_cast<std::uintptr_t>(c.src), dst = reinterpret_cast<std::uintptr_t>(c.dst);
  if (src % 16 == 0 && dst % 16 == 0) {
    const std::size_t vectors = c.bytes / 16;
    const auto* s = static_cast<const uint4*>(c.src);
    auto* d = static_cast<uint4*>(c.dst);
    for (std::size_t i = first; i < vectors; i += stride) d[i] = s[i];
    for (std::size_t i = vectors * 16 + first; i < c.bytes; i += stride)
      static_cast<unsigned char*>(c.dst)[i] = static_cast<const unsigned char*>(c.src)[i];
  } else {
    for (std::size_t i = first; i < c.bytes; i += stride)
      static_cast<unsigned char*>(c.dst)[i] = static_cast<const unsigned char*>(c.src)[i];
  }
}

}  // namespace

cudaError_t batched_copy(const CopySpan* spans, std::size_t count, cudaStream_t stream) {
  for (std::size_t first = 0; first < count; first += kCopySpansPerLaunch) {
    const std::size_t n = std::min<std::size_t>(kCopySpansPerLaunch, count - first);
    CopySpans batch{};
    std::size_t largest = 0;
    for (std::size_t i = 0; i < n; ++i) {
      batch.span[i] = spans[first + i];
      largest = std::max(largest, spans[first + i].bytes);
    }
    // Enough blocks for the largest span at 8 vectors a thread; small spans leave theirs idle at once.
    constexpr unsigned threads = 256;
    const unsigned blocks = blocks_for((largest + 16 * 8 - 1) / (16 * 8), threads, 512);
    launch_kernel(batched_copy_kernel, dim3(blocks, static_cast<unsigned>(n)), threads, 0, stream, batch);
    if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace fisedit::kernels
