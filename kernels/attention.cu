// Dispatch between the flash kernels and the fallback, and the fallback itself: CUDA cores, any head
// width. A block holds kRows query rows of one (batch, head), one warp each, and streams the keys
// through shared memory in tiles of kKeys shared by all its warps (an 8x cut of the key/value
// traffic against one row per block, which is what keeps the VAE's single 512-wide head usable).
// Lanes split the head dimension: a key's score is a warp reduction, an output channel belongs to
// one lane. Everything is float32; probabilities stay float32 for the P.V product too.
#include "attention.cuh"
#include "attention_flash.cuh"
#include "attention_flash2.cuh"

#include <cuda_fp16.h>

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fisedit::kernels {
namespace {

constexpr int kRows = 8;   // query rows (= warps) per block
constexpr int kKeys = 32;  // keys per shared-memory tile
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Shared memory: per warp q (pre-scaled) and the output accumulator as float [2][D], then the K
// and V tiles as half [kKeys][D] each.
__global__ void __launch_bounds__(kRows * 32) attention_fallback_kernel(AttentionArgs a) {
  extern __shared__ float shared[];
  const int d = a.head_dim, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sq = shared + warp * 2 * d;
  float* acc = sq + d;
  __half* sk = reinterpret_cast<__half*>(shared + kRows * 2 * d);
  __half* sv = sk + kKeys * d;

  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads;
  const std::int64_t stride = std::int64_t{a.heads} * d;
  const __half* q = reinterpret_cast<const __half*>(a.q) + std::int64_t{b} * a.lq * stride + std::int64_t{h} * d;
  const __half* k = reinterpret_cast<const __half*>(a.k) + std::int64_t{b} * a.lk * stride + std::int64_t{h} * d;
  const __half* v = reinterpret_cast<const __half*>(a.v) + std::int64_t{b} * a.lk * stride + std::int64_t{h} * d;
  const int row0 = blockIdx.x * kRows, row = row0 + warp;
  const bool active = row < a.lq;

  // Scores are kept in the log2 domain (exp2f is one instruction).
  const float scale_log2 = a.scale * kLog2e;
  if (active)
    for (int c = lane; c < d; c += 32) {
      sq[c] = __half2float(q[std::int64_t{row} * stride + c]) * scale_log2;
      acc[c] = 0.0f;
    }
  float m = -INFINITY, l = 0.0f;
  // Causal: no row of this block sees keys past its last row.
  const int key_end = a.causal ? min(a.lk, row0 + kRows) : a.lk;

  for (int key0 = 0; key0 < key_end; key0 += kKeys) {
    const int n = min(kKeys, key_end - key0);
    __syncthreads();  // every warp is done with the previous tile
    // Rows past n are zero so the unrolled loops below never read stale (possibly NaN) halves.
    for (int i = threadIdx.x; i < kKeys * d; i += blockDim.x) {
      const int r = i / d, c = i % d;
      const bool valid = r < n;
      const std::int64_t src = std::int64_t{key0 + r} * stride + c;
      sk[i] = valid ? k[src] : __float2half(0.0f);
      sv[i] = valid ? v[src] : __float2half(0.0f);
    }
    __syncthreads();
    if (!active) continue;

    float s[kKeys];
    float tile_max = m;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      float part = 0.0f;
      for (int c = lane; c < d; c += 32) part += sq[c] * __half2float(sk[j * d + c]);
      s[j] = warp_sum(part);
      if (j >= n || (a.causal && key0 + j > row)) s[j] = -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    // A row with no visible key yet keeps m = -inf; subtracting 0 instead avoids inf - inf.
    const float base = tile_max == -INFINITY ? 0.0f : tile_max;
    const float correction = exp2f(m - base);
    m = tile_max;
    float tile_sum = 0.0f;
#pragma unroll
    for (int j = 0; j < kKeys; ++j) {
      s[j] = exp2f(s[j] - base);
      tile_sum += s[j];
    }
    l = l * correction + tile_sum;
    for (int c = lane; c < d; c += 32) {
      float o = acc[c] * correction;
#pragma unroll
      for (int j = 0; j < kKeys; ++j) o += s[j] * __half2float(sv[j * d + c]);
      acc[c] = o;
    }
  }
  if (!active) return;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  __half* out = reinterpret_cast<__half*>(a.out) + std::int64_t{b} * a.lq * stride + std::int64_t{h} * d;
  for (int c = lane; c < d; c += 32) out[std::int64_t{row} * stride + c] = __float2half_rn(acc[c] * inv);
}

int max_shared_optin() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
    return 48 * 1024;
  return bytes;
}

bool valid_sizes(const AttentionArgs& a) {
  return a.q && a.k && a.v && a.out && a.batch >= 0 && a.heads >= 1 && a.head_dim >= 1 && a.lq >= 0 && a.lk >= 1 &&
         std::int64_t{a.batch} * a.heads <= 65535;
}

// FISEDIT_ATTENTION, read once: which tensor-core kernel runs (see attention.cuh).
enum class FlashChoice { flash2_auto, flash2_rows128, flash2_rows64, legacy };

FlashChoice flash_choice() {
  static const FlashChoice choice = [] {
    const char* env = std::getenv("FISEDIT_ATTENTION");
    if (!env || !*env || std::strcmp(env, "auto") == 0 || std::strcmp(env, "flash2") == 0) return FlashChoice::flash2_auto;
    if (std::strcmp(env, "legacy") == 0) return FlashChoice::legacy;
    if (std::strcmp(env, "flash2-rows128") == 0) return FlashChoice::flash2_rows128;
    if (std::strcmp(env, "flash2-rows64") == 0) return FlashChoice::flash2_rows64;
    std::fprintf(stderr,
                 "fisedit: FISEDIT_ATTENTION=%s is not one of auto, flash2, flash2-rows128, flash2-rows64, legacy; "
                 "using auto\n",
                 env);
    return FlashChoice::flash2_auto;
  }();
  return choice;
}

// The flash2 block shape FISEDIT_ATTENTION asks for.
Flash2Tile flash2_tile() {
  switch (flash_choice()) {
    case FlashChoice::flash2_rows128: return Flash2Tile::rows128;
    case FlashChoice::flash2_rows64: return Flash2Tile::rows64;
    case FlashChoice::flash2_auto:
    case FlashChoice::legacy: break;
  }
  return Flash2Tile::automatic;
}

// FISEDIT_ATTENTION_SPLIT, read once, where the arguments leave the split to the environment.
AttentionSplit split_choice(AttentionSplit requested) {
  static const AttentionSplit from_environment = [] {
    const char* env = std::getenv("FISEDIT_ATTENTION_SPLIT");
    if (!env || !*env || std::strcmp(env, "auto") == 0) return AttentionSplit::automatic;
    if (std::strcmp(env, "off") == 0) return AttentionSplit::off;
    if (std::strcmp(env, "on") == 0) return AttentionSplit::on;
    std::fprintf(stderr, "fisedit: FISEDIT_ATTENTION_SPLIT=%s is not one of auto, off, on; using auto\n", env);
    return AttentionSplit::automatic;
  }();
  return requested == AttentionSplit::environment ? from_environment : requested;
}

}  // namespace

const char* attention_path_name(AttentionPath path) {
  switch (path) {
    case AttentionPath::flash2: return "flash2";
    case AttentionPath::flash: return "flash (legacy)";
    case AttentionPath::fallback: return "fallback";
    case AttentionPath::unsupported: return "unsupported";
  }
  return "?";
}

std::size_t attention_fallback_shared_bytes(int head_dim) {
  return std::size_t{kRows} * 2 * head_dim * sizeof(float) + std::size_t{2} * kKeys * head_dim * sizeof(__half);
}

AttentionPath attention_path(const AttentionArgs& a) {
  if (flash_choice() != FlashChoice::legacy && flash2_attention_can_implement(a)) return AttentionPath::flash2;
  if (flash_attention_can_implement(a)) return AttentionPath::flash;
  if (attention_fallback_shared_bytes(a.head_dim) <= static_cast<std::size_t>(max_shared_optin()))
    return AttentionPath::fallback;
  return AttentionPath::unsupported;
}

std::size_t attention_workspace_bytes(const AttentionArgs& a) {
  if (!valid_sizes(a) || a.batch == 0 || a.lq == 0 || attention_path(a) != AttentionPath::flash2) return 0;
  return flash2_attention_workspace_bytes(a, flash2_tile(), split_choice(a.split));
}

cudaError_t attention(const AttentionArgs& a, cudaStream_t stream, void* workspace) {
  if (!valid_sizes(a)) return cudaErrorInvalidValue;
  if (a.batch == 0 || a.lq == 0) return cudaSuccess;
  switch (attention_path(a)) {
    case AttentionPath::flash2: return flash2_attention(a, stream, flash2_tile(), split_choice(a.split), workspace);
    case AttentionPath::flash: return flash_attention(a, stream);
    case AttentionPath::unsupported: return cudaErrorNotSupported;
    case AttentionPath::fallback: break;
  }
  const std::size_t shared = attention_fallback_shared_bytes(a.head_dim);
  if (shared > 48 * 1024) {
    const cudaError_t status = cudaFuncSetAttribute(attention_fallback_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    static_cast<int>(shared));
    if (status != cudaSuccess) return status;
  }
  const dim3 grid(static_cast<unsigned>((a.lq + kRows - 1) / kRows), static_cast<unsigned>(a.batch * a.heads));
  attention_fallback_kernel<<<grid, kRows * 32, shared, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace fisedit::kernels
