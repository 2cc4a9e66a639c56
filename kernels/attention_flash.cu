// Flash attention forward on tensor cores (FlashAttention-2 structure, mma.sync so it runs on sm_80
#include "launch.cuh"
// and sm_90 alike). A block owns kRows = 16 * kWarps query rows of one (batch, head); each warp owns
// 16 of them and keeps its q fragments, its running softmax statistics and its output accumulator in
// registers for the whole sweep over the keys. Keys and values stream through shared memory in tiles
// of 64 with cp.async: the next K tile loads while P.V runs, the next V tile while Q.K^T runs.
// Shared-memory rows are padded by 16 bytes so ldmatrix's eight row addresses hit distinct banks.
#include "attention_flash.cuh"
#include "tensor_core.cuh"

#include <cuda_fp16.h>

#include <cstddef>

namespace fisedit::kernels {
namespace {

using namespace tc;

template <int kHeadDim, int kWarps>
struct FlashTraits {
  static_assert(kHeadDim % 16 == 0, "head width is padded to a multiple of the mma k-step");
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kRows = 16 * kWarps;       // query rows per block
  static constexpr int kKeys = 64;                // keys per tile
  static constexpr int kPitch = kHeadDim + 8;     // halves per shared row: 16 * odd bytes
  static constexpr int kKSteps = kHeadDim / 16;   // k-steps of Q.K^T
  static constexpr int kDTiles = kHeadDim / 8;    // n-tiles of the output
  static constexpr int kChunks = kHeadDim / 8;    // 16-byte chunks per row
  static constexpr std::size_t kSharedBytes = std::size_t{kRows + 2 * kKeys} * kPitch * sizeof(__half);
};

constexpr float kLog2e = 1.4426950408889634f;


// Rows [row0, row0 + R) of one head ([len, stride] starting at `base`) into shared [R][kPitch];
// rows past `len` and channels past `d` (the padding up to kHeadDim) are zero.
template <class Traits, int R>
__device__ __forceinline__ void load_tile(__half* dst, const __half* base, int row0, int len, std::int64_t stride,
                                          int d) {
#pragma unroll
  for (int i = threadIdx.x; i < R * Traits::kChunks; i += Traits::kThreads) {
    const int r = i / Traits::kChunks, col = i % Traits::kChunks * 8;
    const bool valid = row0 + r < len && col < d;
    cp_async_16(dst + r * Traits::kPitch + col, valid ? base + std::int64_t{row0 + r} * stride + col : base, valid);
  }
}

template <int kHeadDim, int kWarps>
__global__ void __launch_bounds__(32 * kWarps) flash_attention_kernel(const AttentionArgs a) {
  using T = FlashTraits<kHeadDim, kWarps>;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __half* sq = reinterpret_cast<__half*>(shared_bytes);  // [kRows][kPitch], later the output staging
  __half* sk = sq + T::kRows * T::kPitch;                // [kKeys][kPitch]
  __half* sv = sk + T::kKeys * T::kPitch;                // [kKeys][kPitch]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, quad_lane = lane % 4;  // mma fragment coordinates
  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads, d = a.head_dim;
  const std::int64_t stride = std::int64_t{a.heads} * d;
  const std::int64_t head = std::int64_t{h} * d;
  const __half* q = reinterpret_cast<const __half*>(a.q) + std::int64_t{b} * a.lq * stride + head;
  const __half* k = reinterpret_cast<const __half*>(a.k) + std::int64_t{b} * a.lk * stride + head;
  const __half* v = reinterpret_cast<const __half*>(a.v) + std::int64_t{b} * a.lk * stride + head;
  const int q0 = blockIdx.x * T::kRows;
  // This thread's two query rows (fragment rows `group` and `group + 8` of its warp's 16).
  const int row_lo = q0 + warp * 16 + group, row_hi = row_lo + 8;

  int key_tiles = (a.lk + T::kKeys - 1) / T::kKeys;
  if (a.causal) key_tiles = min(key_tiles, (q0 + T::kRows - 1) / T::kKeys + 1);

  load_tile<T, T::kRows>(sq, q, q0, a.lq, stride, d);
  load_tile<T, T::kKeys>(sk, k, 0, a.lk, stride, d);
  cp_async_commit();
  load_tile<T, T::kKeys>(sv, v, 0, a.lk, stride, d);
  cp_async_commit();

  unsigned qf[T::kKSteps][4];
  float o[T::kDTiles][4];
#pragma unroll
  for (int i = 0; i < T::kDTiles; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // running max (log2 domain) and sum
  const float scale_log2 = a.scale * kLog2e;

  for (int tile = 0; tile < key_tiles; ++tile) {
    cp_async_wait<1>();  // K of this tile (and Q) landed; V may still be in flight
    __syncthreads();
    if (tile == 0) {
#pragma unroll
      for (int ks = 0; ks < T::kKSteps; ++ks)
        ldmatrix_x4(qf[ks], sq + (warp * 16 + lane % 8 + (lane / 8 % 2) * 8) * T::kPitch + ks * 16 + lane / 16 * 8);
    }

    // S[16, 64] = Q K^T for this warp's rows: 8 n-tiles of 8 keys.
    float s[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < T::kKSteps; ++ks) {
#pragma unroll
      for (int np = 0; np < 4; ++np) {
        unsigned kf[4];  // b0, b1 of key n-tiles 2np and 2np + 1
        ldmatrix_x4(kf, sk + (np * 16 + lane % 8 + lane / 16 * 8) * T::kPitch + ks * 16 + (lane / 8 % 2) * 8);
        mma_16816(s[2 * np], qf[ks], kf[0], kf[1]);
        mma_16816(s[2 * np + 1], qf[ks], kf[2], kf[3]);
      }
    }

    // Online softmax. Masking (keys past lk, or past the row when causal) only on the tiles that need it.
    const int key0 = tile * T::kKeys;
    const bool mask = key0 + T::kKeys > a.lk || (a.causal && key0 + T::kKeys - 1 > q0 + warp * 16);
    float tile_max[2] = {m[0], m[1]};
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[nt][e] * scale_log2;
        if (mask) {
          const int key = key0 + nt * 8 + quad_lane * 2 + e % 2, row = e < 2 ? row_lo : row_hi;
          if (key >= a.lk || (a.causal && key > row)) x = -INFINITY;
        }
        s[nt][e] = x;
        tile_max[e / 2] = fmaxf(tile_max[e / 2], x);
      }
    float base[2], correction[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
      base[r] = tile_max[r] == -INFINITY ? 0.0f : tile_max[r];  // no visible key yet: avoid inf - inf
      correction[r] = exp2f(m[r] - base[r]);
      m[r] = tile_max[r];
      l[r] *= correction[r];
    }
#pragma unroll
    for (int i = 0; i < T::kDTiles; ++i) {
      o[i][0] *= correction[0];
      o[i][1] *= correction[0];
      o[i][2] *= correction[1];
      o[i][3] *= correction[1];
    }
    // P as the A operand of P.V: the accumulators of key n-tiles 2j and 2j + 1 are exactly the
    // A fragment of k-step j, so the probabilities never leave registers.
    unsigned pf[4][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - base[e / 2]);
        l[e / 2] += s[nt][e];
      }
      pf[nt / 2][nt % 2 * 2] = pack_half2(s[nt][0], s[nt][1]);
      pf[nt / 2][nt % 2 * 2 + 1] = pack_half2(s[nt][2], s[nt][3]);
    }

    cp_async_wait<0>();  // V of this tile landed
    __syncthreads();     // and every warp is done reading K: prefetch the next K tile
    if (tile + 1 < key_tiles) load_tile<T, T::kKeys>(sk, k, key0 + T::kKeys, a.lk, stride, d);
    cp_async_commit();

    // O[16, D] += P[16, 64] V[64, D]
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int dp = 0; dp < T::kDTiles / 2; ++dp) {
        unsigned vf[4];  // b0, b1 of channel n-tiles 2dp and 2dp + 1
        ldmatrix_x4_trans(vf, sv + (j * 16 + lane % 8 + (lane / 8 % 2) * 8) * T::kPitch + dp * 16 + lane / 16 * 8);
        mma_16816(o[2 * dp], pf[j], vf[0], vf[1]);
        mma_16816(o[2 * dp + 1], pf[j], vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done reading V: prefetch the next V tile
    if (tile + 1 < key_tiles) load_tile<T, T::kKeys>(sv, v, key0 + T::kKeys, a.lk, stride, d);
    cp_async_commit();
  }
  cp_async_wait<0>();

  // Normalise, stage the warp's 16 rows in its own part of the q buffer (only this warp read those
  // rows), then write whole 16-byte chunks of each row.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
  }
  __half* so = sq + warp * 16 * T::kPitch;
#pragma unroll
  for (int i = 0; i < T::kDTiles; ++i) {
    const int col = i * 8 + quad_lane * 2;
    *reinterpret_cast<__half2*>(so + group * T::kPitch + col) = __floats2half2_rn(o[i][0] * inv[0], o[i][1] * inv[0]);
    *reinterpret_cast<__half2*>(so + (group + 8) * T::kPitch + col) =
        __floats2half2_rn(o[i][2] * inv[1], o[i][3] * inv[1]);
  }
  __syncwarp();
  __half* out = reinterpret_cast<__half*>(a.out) + std::int64_t{b} * a.lq * stride + head;
  const int chunks = d / 8;
  for (int i = lane; i < 16 * chunks; i += 32) {
    const int r = i / chunks, col = i % chunks * 8, row = q0 + warp * 16 + r;
    if (row < a.lq)
      *reinterpret_cast<uint4*>(out + std::int64_t{row} * stride + col) =
          *reinterpret_cast<const uint4*>(so + r * T::kPitch + col);
  }
}

template <int kHeadDim>
cudaError_t launch(const AttentionArgs& a, cudaStream_t stream) {
  constexpr int kWarps = 4;
  using T = FlashTraits<kHeadDim, kWarps>;
  const auto kernel = flash_attention_kernel<kHeadDim, kWarps>;
  // Opted in once per instantiation (the engine drives one device): the call costs host time.
  static const cudaError_t opted_in =
      T::kSharedBytes > 48 * 1024
          ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(T::kSharedBytes))
          : cudaSuccess;
  if (opted_in != cudaSuccess) return opted_in;
  const dim3 grid(static_cast<unsigned>((a.lq + T::kRows - 1) / T::kRows), static_cast<unsigned>(a.batch * a.heads));
  kernel<<<grid, T::kThreads, T::kSharedBytes, stream>>>(a);
  return cudaGetLastError();
}


}  // namespace

bool flash_attention_can_implement(const AttentionArgs& a) {
  return a.head_dim % 8 == 0 && a.head_dim <= 160 && aligned16(a.q) && aligned16(a.k) && aligned16(a.v) &&
         aligned16(a.out);
}

cudaError_t flash_attention(const AttentionArgs& a, cudaStream_t stream) {
  if (!flash_attention_can_implement(a)) return cudaErrorNotSupported;
  const int d = a.head_dim;
  if (d <= 16) return launch<16>(a, stream);
  if (d <= 32) return launch<32>(a, stream);
  if (d <= 48) return launch<48>(a, stream);
  if (d <= 64) return launch<64>(a, stream);
  if (d <= 80) return launch<80>(a, stream);
  if (d <= 96) return launch<96>(a, stream);
  if (d <= 128) return launch<128>(a, stream);
  return launch<160>(a, stream);
}

}  // namespace fisedit::kernels
