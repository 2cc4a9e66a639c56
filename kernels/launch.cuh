#pragma once
// What the kernels' launchers share: grid sizes for grid-stride loops and the test for 16-byte vector
// access (8 halves at a time).
#include <cstddef>
#include <cstdint>
#include <utility>

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include "core/env.h"
#endif

namespace fisedit::kernels {

constexpr int kVec = 8;  // halves per 16-byte access

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Blocks of `threads` for `work` items, at least one and at most `limit`: the kernels stride over the
// grid for what lies beyond.
inline unsigned blocks_for(std::size_t work, std::size_t threads = 256, std::size_t limit = 65535) {
  const std::size_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < limit ? (blocks ? blocks : 1) : limit);
}

#if defined(__CUDACC__)
// Programmatic dependent launch (Hopper): a kernel launched with `launch_kernel` may start while the kernel
// before it in the stream is finishing, so the gap between two small kernels (most of a sparse step's
// ~500) shrinks. Each kernel so launched must call wait_for_producer() before it touches global
// memory: it returns once the previous grid has finished and its writes are visible. A kernel then
// lets the next one launch (allow_dependents); the next one's blocks start once every block of this
// one has, and wait in wait_for_producer. Both are no-ops when the kernel was launched without it.
__device__ __forceinline__ void wait_for_producer() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void allow_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}
// Both, at the top of a kernel.
__device__ __forceinline__ void dependent_prologue() {
  wait_for_producer();
  allow_dependents();
}

// FISEDIT_PDL=1 (read once): launch with programmatic stream serialisation; off, an ordinary launch.
inline bool dependent_launch() {
  static const bool on = env_flag("FISEDIT_PDL", false);
  return on;
}

// kernel<<<grid, block, shared, stream>>>(args...), with programmatic stream serialisation when
// dependent_launch(); the launch's error.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared, cudaStream_t stream,
                   Args&&... args) {
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = dependent_launch() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}
#endif

}  // namespace fisedit::kernels
