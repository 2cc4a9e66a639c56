#pragma once
// Many device-to-device copies in one launch: refreshing a recorded step's inputs and keeping its
// outputs (Backend::copy_into) costs one launch per kCopySpansPerLaunch copies instead of one each.
#include <cstddef>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct CopySpan {
  const void* src;
  void* dst;
  std::size_t bytes;
};

// Spans per launch: they travel as the kernel's parameter (under the 4 KB limit), so a launch needs
// no table in device memory and no upload.
constexpr int kCopySpansPerLaunch = 128;

// Copies every span (sources and destinations must not overlap); any count, any alignment (16-byte
// accesses where a span's ends allow).
cudaError_t batched_copy(const CopySpan* spans, std::size_t count, cudaStream_t stream);

}  // namespace fisedit::kernels
