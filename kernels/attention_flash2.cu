// Flash attention forward on tensor cores, second version (FlashAttention-2 structure, mma.sync
#include "launch.cuh"
// m16n8k16 so it runs on sm_80 and sm_90 alike). Against attention_flash.cu:
// - A warp owns kRowTiles x 16 query rows (32 for head widths up to 128): each K fragment (ldmatrix)
//   and each V fragment (ldmatrix.trans) feeds kRowTiles mma pairs, halving the shared-memory traffic
//   per mma that bounds the 16-row kernel. A block owns 128 query rows (64 in the small-grid shape),
//   so each K/V tile read from global memory serves twice the queries.
// - K and V of one key tile travel as one cp.async group through a kStages-deep ring of shared
//   buffers: tile t + kStages - 1 loads while tile t computes, one __syncthreads per tile.
// - Row maxima are taken on the unscaled scores and the scale folded into the exponent: one FFMA and
//   one ex2.approx.ftz (MUFU.EX2) per score. scale > 0 is required for that (the dispatcher routes
//   anything else to the legacy kernel).
// Unchanged: fp32 scores, statistics and accumulators; P rounded to fp16 for P.V and kept in
// registers (the S accumulators of key n-tiles 2j, 2j + 1 are the A fragment of k-step j); shared
// rows padded by 16 bytes so ldmatrix's eight row addresses (pitch = odd multiple of 16 bytes) hit
// distinct banks; head widths padded with zeros to the instantiated width.
#include "attention_flash2.cuh"
#include "tensor_core.cuh"

#include <cuda_fp16.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace fisedit::kernels {
namespace {

using namespace tc;

// kQInRegs: the Q fragments stay in registers for the whole sweep (else they are re-read from shared
// memory every key tile, which frees kRowTiles * kHeadDim / 4 registers for the wide heads).
template <int kHeadDim_, int kWarps_, int kRowTiles_, int kKeys_, int kStages_, bool kQInRegs_, int kMinBlocks_>
struct Flash2Config {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kRowTiles = kRowTiles_;
  static constexpr int kKeys = kKeys_;
  static constexpr int kStages = kStages_;
  static constexpr bool kQInRegs = kQInRegs_;
  static constexpr int kMinBlocks = kMinBlocks_;

  static_assert(kHeadDim % 16 == 0, "head width is padded to a multiple of the mma k-step");
  static_assert(kKeys % 16 == 0, "keys per tile: a multiple of the P.V k-step");
  static_assert(kStages >= 2, "at least double buffering");
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int kWarpRows = 16 * kRowTiles;     // query rows per warp
  static constexpr int kRows = kWarps * kWarpRows;     // query rows per block
  static constexpr int kPitch = kHeadDim + 8;          // halves per shared row: 16 * odd bytes
  static_assert((kPitch * 2 / 16) % 2 == 1, "row pitch must be an odd number of 16-byte units");
  static constexpr int kKSteps = kHeadDim / 16;        // k-steps of Q.K^T
  static constexpr int kDTiles = kHeadDim / 8;         // n-tiles of the output
  static constexpr int kChunks = kHeadDim / 8;         // 16-byte chunks per row
  static constexpr int kNTiles = kKeys / 8;            // n-tiles of S
  static constexpr int kPSteps = kKeys / 16;           // k-steps of P.V
  static constexpr int kTileHalves = kKeys * kPitch;   // one K or one V tile
  static constexpr int kStageHalves = 2 * kTileHalves;  // K then V
  static constexpr std::size_t kSharedBytes =
      (std::size_t{kRows} * kPitch + std::size_t{kStages} * kStageHalves) * sizeof(__half);
};

constexpr float kLog2e = 1.4426950408889634f;

// 2^x in one MUFU.EX2 (flush-to-zero; ex2(-inf) = +0, which the masking relies on).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}


// Rows [row0, row0 + R) of one head ([len, stride] starting at `base`) into shared [R][kPitch];
// rows past `len` and channels past `d` (the padding up to kHeadDim) are zero.
template <class C, int R>
__device__ __forceinline__ void load_tile(__half* dst, const __half* base, int row0, int len, std::int64_t stride,
                                          int d) {
#pragma unroll
  for (int i = threadIdx.x; i < R * C::kChunks; i += C::kThreads) {
    const int r = i / C::kChunks, col = i % C::kChunks * 8;
    const bool valid = row0 + r < len && col < d;
    cp_async_16(dst + r * C::kPitch + col, valid ? base + std::int64_t{row0 + r} * stride + col : base, valid);
  }
}

template <class C>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocks) flash2_attention_kernel(const AttentionArgs a) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __half* sq = reinterpret_cast<__half*>(shared_bytes);  // [kRows][kPitch], later the output staging
  __half* skv = sq + C::kRows * C::kPitch;               // kStages x {K [kKeys][kPitch], V [kKeys][kPitch]}

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, quad_lane = lane % 4;  // mma fragment coordinates
  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads, d = a.head_dim;
  const std::int64_t stride = std::int64_t{a.heads} * d;
  const std::int64_t head = std::int64_t{h} * d;
  const __half* q = reinterpret_cast<const __half*>(a.q) + std::int64_t{b} * a.lq * stride + head;
  const __half* k = reinterpret_cast<const __half*>(a.k) + std::int64_t{b} * a.lk * stride + head;
  const __half* v = reinterpret_cast<const __half*>(a.v) + std::int64_t{b} * a.lk * stride + head;
  const int q0 = blockIdx.x * C::kRows;
  const int warp_row0 = q0 + warp * C::kWarpRows;  // first query row of this warp
  // Fragment row `group` of row tile rt is query row warp_row0 + rt * 16 + group; `group + 8` the other.

  int key_tiles = (a.lk + C::kKeys - 1) / C::kKeys;
  if (a.causal) key_tiles = min(key_tiles, (q0 + C::kRows - 1) / C::kKeys + 1);  // no row sees past this

  // Lane parts of the ldmatrix addresses (halves). A operand / V (trans): matrices 0..3 are rows 0-7,
  // rows 8-15, rows 0-7 +8 columns, rows 8-15 +8 columns. K: keys 0-7, keys 0-7 +8 columns, keys 8-15,
  // keys 8-15 +8 columns (b0, b1 of two key n-tiles).
  const int a_lane = (lane % 8 + (lane / 8 % 2) * 8) * C::kPitch + lane / 16 * 8;
  const int k_lane = (lane % 8 + lane / 16 * 8) * C::kPitch + (lane / 8 % 2) * 8;
  const __half* sq_warp = sq + warp * C::kWarpRows * C::kPitch + a_lane;

  // Prologue: Q with tile 0, then tiles 1 .. kStages - 2, one commit group each (empty past the end).
  load_tile<C, C::kRows>(sq, q, q0, a.lq, stride, d);
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    if (s < key_tiles) {
      __half* stage = skv + s * C::kStageHalves;
      load_tile<C, C::kKeys>(stage, k, s * C::kKeys, a.lk, stride, d);
      load_tile<C, C::kKeys>(stage + C::kTileHalves, v, s * C::kKeys, a.lk, stride, d);
    }
    cp_async_commit();
  }

  // Q fragments: [rt][ks] when kept in registers, else only [rt][0] is used, per k-step.
  constexpr int kQSteps = C::kQInRegs ? C::kKSteps : 1;
  unsigned qf[C::kRowTiles][kQSteps][4];
  float o[C::kRowTiles][C::kDTiles][4];
#pragma unroll
  for (int rt = 0; rt < C::kRowTiles; ++rt)
#pragma unroll
    for (int i = 0; i < C::kDTiles; ++i) o[rt][i][0] = o[rt][i][1] = o[rt][i][2] = o[rt][i][3] = 0.0f;
  // Running row maximum (scaled, log2 domain) and the thread's partial row sum, for rows group, group + 8.
  float m[C::kRowTiles][2], l[C::kRowTiles][2];
#pragma unroll
  for (int rt = 0; rt < C::kRowTiles; ++rt) m[rt][0] = m[rt][1] = -INFINITY, l[rt][0] = l[rt][1] = 0.0f;
  const float scale_log2 = a.scale * kLog2e;  // > 0 (flash2_attention_can_implement)

  for (int tile = 0; tile < key_tiles; ++tile) {
    cp_async_wait<C::kStages - 2>();  // this tile's K and V (and, for tile 0, Q) landed for this thread
    __syncthreads();  // ... for every thread; and every warp is done with the stage refilled below
    {
      const int next = tile + C::kStages - 1;
      if (next < key_tiles) {
        __half* stage = skv + (next % C::kStages) * C::kStageHalves;
        load_tile<C, C::kKeys>(stage, k, next * C::kKeys, a.lk, stride, d);
        load_tile<C, C::kKeys>(stage + C::kTileHalves, v, next * C::kKeys, a.lk, stride, d);
      }
      cp_async_commit();
    }
    const __half* sk = skv + (tile % C::kStages) * C::kStageHalves;
    const __half* sv = sk + C::kTileHalves;

    if (C::kQInRegs && tile == 0) {
#pragma unroll
      for (int rt = 0; rt < C::kRowTiles; ++rt)
#pragma unroll
        for (int ks = 0; ks < kQSteps; ++ks) ldmatrix_x4(qf[rt][ks], sq_warp + rt * 16 * C::kPitch + ks * 16);
    }

    // S[kWarpRows, kKeys] = Q K^T (unscaled).
    float s[C::kRowTiles][C::kNTiles][4];
#pragma unroll
    for (int rt = 0; rt < C::kRowTiles; ++rt)
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt) s[rt][nt][0] = s[rt][nt][1] = s[rt][nt][2] = s[rt][nt][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < C::kKSteps; ++ks) {
      if constexpr (!C::kQInRegs) {
#pragma unroll
        for (int rt = 0; rt < C::kRowTiles; ++rt) ldmatrix_x4(qf[rt][0], sq_warp + rt * 16 * C::kPitch + ks * 16);
      }
#pragma unroll
      for (int np = 0; np < C::kNTiles / 2; ++np) {
        unsigned kf[4];  // b0, b1 of key n-tiles 2np and 2np + 1
        ldmatrix_x4(kf, sk + k_lane + np * 16 * C::kPitch + ks * 16);
#pragma unroll
        for (int rt = 0; rt < C::kRowTiles; ++rt) {
          const unsigned(&af)[4] = qf[rt][C::kQInRegs ? ks : 0];
          mma_16816(s[rt][2 * np], af, kf[0], kf[1]);
          mma_16816(s[rt][2 * np + 1], af, kf[2], kf[3]);
        }
      }
    }

    // Online softmax. Masking (keys past lk, or past the row when causal) only on the tiles that
    // need it: warp-uniform.
    const int key0 = tile * C::kKeys;
    const bool mask = key0 + C::kKeys > a.lk || (a.causal && key0 + C::kKeys - 1 > warp_row0);
    unsigned pf[C::kRowTiles][C::kPSteps][4];
#pragma unroll
    for (int rt = 0; rt < C::kRowTiles; ++rt) {
      const int row_lo = warp_row0 + rt * 16 + group;
      float tile_max[2] = {-INFINITY, -INFINITY};  // unscaled
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (mask) {
            const int key = key0 + nt * 8 + quad_lane * 2 + e % 2, row = row_lo + (e / 2) * 8;
            if (key >= a.lk || (a.causal && key > row)) s[rt][nt][e] = -INFINITY;
          }
          tile_max[e / 2] = fmaxf(tile_max[e / 2], s[rt][nt][e]);
        }
      float base[2], correction[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        // scale_log2 > 0: max(s) * scale_log2 = max(s * scale_log2); -inf stays -inf.
        const float m_new = fmaxf(m[rt][r], tile_max[r] * scale_log2);
        base[r] = m_new == -INFINITY ? 0.0f : m_new;  // no visible key yet: avoid inf - inf
        correction[r] = fast_exp2(m[rt][r] - base[r]);  // m = -inf: 0 (l and o are 0 then anyway)
        m[rt][r] = m_new;
        l[rt][r] *= correction[r];
      }
#pragma unroll
      for (int i = 0; i < C::kDTiles; ++i) {
        o[rt][i][0] *= correction[0];
        o[rt][i][1] *= correction[0];
        o[rt][i][2] *= correction[1];
        o[rt][i][3] *= correction[1];
      }
      // P as the A operand of P.V: the accumulators of key n-tiles 2j and 2j + 1 are the A fragment
      // of k-step j.
#pragma unroll
      for (int nt = 0; nt < C::kNTiles; ++nt) {
        float p[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          p[e] = fast_exp2(fmaf(s[rt][nt][e], scale_log2, -base[e / 2]));  // masked: exp2(-inf) = 0
          l[rt][e / 2] += p[e];
        }
        pf[rt][nt / 2][nt % 2 * 2] = pack_half2(p[0], p[1]);
        pf[rt][nt / 2][nt % 2 * 2 + 1] = pack_half2(p[2], p[3]);
      }
    }

    // O[kWarpRows, D] += P[kWarpRows, kKeys] V[kKeys, D]
#pragma unroll
    for (int j = 0; j < C::kPSteps; ++j) {
#pragma unroll
      for (int dp = 0; dp < C::kDTiles / 2; ++dp) {
        unsigned vf[4];  // b0, b1 of channel n-tiles 2dp and 2dp + 1
        ldmatrix_x4_trans(vf, sv + a_lane + j * 16 * C::kPitch + dp * 16);
#pragma unroll
        for (int rt = 0; rt < C::kRowTiles; ++rt) {
          mma_16816(o[rt][2 * dp], pf[rt][j], vf[0], vf[1]);
          mma_16816(o[rt][2 * dp + 1], pf[rt][j], vf[2], vf[3]);
        }
      }
    }
  }
  cp_async_wait<0>();  // only empty groups can be pending here; leave none behind

  // Normalise, stage the warp's rows in its own rows of the q buffer (only this warp ever read them),
  // then write whole 16-byte chunks of each row.
  __syncwarp();  // every lane is past its last ldmatrix of those rows
  __half* so = sq + warp * C::kWarpRows * C::kPitch;
#pragma unroll
  for (int rt = 0; rt < C::kRowTiles; ++rt) {
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float sum = l[rt][r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      inv[r] = sum > 0.0f ? 1.0f / sum : 0.0f;
    }
    __half* so_rt = so + rt * 16 * C::kPitch;
#pragma unroll
    for (int i = 0; i < C::kDTiles; ++i) {
      const int col = i * 8 + quad_lane * 2;
      *reinterpret_cast<__half2*>(so_rt + group * C::kPitch + col) =
          __floats2half2_rn(o[rt][i][0] * inv[0], o[rt][i][1] * inv[0]);
      *reinterpret_cast<__half2*>(so_rt + (group + 8) * C::kPitch + col) =
          __floats2half2_rn(o[rt][i][2] * inv[1], o[rt][i][3] * inv[1]);
    }
  }
  __syncwarp();
  __half* out = reinterpret_cast<__half*>(a.out) + std::int64_t{b} * a.lq * stride + head;
  const int chunks = d / 8;
  for (int i = lane; i < C::kWarpRows * chunks; i += 32) {
    const int r = i / chunks, col = i % chunks * 8, row = warp_row0 + r;
    if (row < a.lq)
      *reinterpret_cast<uint4*>(out + std::int64_t{row} * stride + col) =
          *reinterpret_cast<const uint4*>(so + r * C::kPitch + col);
  }
}

// Block shapes. rows128: 4 warps x 32 rows (Q kept in registers up to D = 96, re-read per tile
// beyond, where the 32-row accumulators need the registers), 8 warps x 16 rows for D = 160.
// rows64: 4 warps x 16 rows (the legacy kernel's shape) for grids too small to fill the GPU.
template <int D>
struct Rows128;
template <> struct Rows128<16> { using type = Flash2Config<16, 4, 2, 64, 2, true, 2>; };
template <> struct Rows128<32> { using type = Flash2Config<32, 4, 2, 64, 2, true, 2>; };
template <> struct Rows128<48> { using type = Flash2Config<48, 4, 2, 64, 2, true, 2>; };
template <> struct Rows128<64> { using type = Flash2Config<64, 4, 2, 64, 2, true, 2>; };
template <> struct Rows128<80> { using type = Flash2Config<80, 4, 2, 64, 2, false, 2>; };
template <> struct Rows128<96> { using type = Flash2Config<96, 4, 2, 32, 2, false, 2>; };
template <> struct Rows128<128> { using type = Flash2Config<128, 4, 2, 32, 2, false, 2>; };
template <> struct Rows128<160> { using type = Flash2Config<160, 8, 1, 32, 2, true, 1>; };

template <int D>
struct Rows64 {
  using type = Flash2Config<D, 4, 1, 64, 2, true, (D <= 64 ? 4 : 2)>;
};

template <class C>
cudaError_t launch(const AttentionArgs& a, cudaStream_t stream) {
  const auto kernel = flash2_attention_kernel<C>;
  if (C::kSharedBytes > 48 * 1024) {
    const cudaError_t status =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(C::kSharedBytes));
    if (status != cudaSuccess) return status;
  }
  const dim3 grid(static_cast<unsigned>((a.lq + C::kRows - 1) / C::kRows), static_cast<unsigned>(a.batch * a.heads));
  kernel<<<grid, C::kThreads, C::kSharedBytes, stream>>>(a);
  return cudaGetLastError();
}

int multiprocessors() {
  int device = 0, count = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
    return 132;
  return count;
}

template <int D>
cudaError_t launch_width(const AttentionArgs& a, cudaStream_t stream, Flash2Tile tile) {
  if (tile == Flash2Tile::automatic) {
    // Fewer 128-row blocks than multiprocessors leaves some idle: take 64-row blocks then.
    const std::int64_t blocks = std::int64_t{(a.lq + 127) / 128} * a.batch * a.heads;
    tile = blocks < multiprocessors() ? Flash2Tile::rows64 : Flash2Tile::rows128;
  }
  if (tile == Flash2Tile::rows64) return launch<typename Rows64<D>::type>(a, stream);
  return launch<typename Rows128<D>::type>(a, stream);
}


}  // namespace

bool flash2_attention_can_implement(const AttentionArgs& a) {
  return a.head_dim % 8 == 0 && a.head_dim >= 8 && a.head_dim <= 160 && a.scale > 0.0f && std::isfinite(a.scale) &&
         aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.out);
}

cudaError_t flash2_attention(const AttentionArgs& a, cudaStream_t stream, Flash2Tile tile) {
  if (!flash2_attention_can_implement(a)) return cudaErrorNotSupported;
  const int d = a.head_dim;
  if (d <= 16) return launch_width<16>(a, stream, tile);
  if (d <= 32) return launch_width<32>(a, stream, tile);
  if (d <= 48) return launch_width<48>(a, stream, tile);
  if (d <= 64) return launch_width<64>(a, stream, tile);
  if (d <= 80) return launch_width<80>(a, stream, tile);
  if (d <= 96) return launch_width<96>(a, stream, tile);
  if (d <= 128) return launch_width<128>(a, stream, tile);
  return launch_width<160>(a, stream, tile);
}

}  // namespace fisedit::kernels
