// Flash attention forward on tensor cores, second version (FlashAttention-2 structure, mma.sync
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
// Split keys (attention.cuh): a grid of few query blocks gets a third dimension, one layer per chunk
// of whole key tiles; each block leaves its rows' unnormalised float32 output and softmax statistics
// in the workspace, and a second kernel merges the chunks. Up to the epilogue a block runs the single
// sweep's code over its chunk, so the numerics are the single sweep's, except that P is rounded to
// fp16 relative to the chunk's running maximum rather than the row's.
#include "attention_flash2.cuh"
#include "launch.cuh"
#include "tensor_core.cuh"

#include <cuda_fp16.h>

#include <algorithm>
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

// The split route's workspace: per chunk, the rows' unnormalised output, then per chunk their
// (running maximum in the scaled log2 domain, sum of probabilities). `layers` = chunks x batch x heads.
struct PartialRows {
  float* o;    // [chunks][batch * heads][lq][head_dim]
  float2* ml;  // [chunks][batch * heads][lq]

  __host__ __device__ PartialRows(float* workspace, std::int64_t layers, const AttentionArgs& a)
      : o(workspace), ml(reinterpret_cast<float2*>(workspace + layers * a.lq * a.head_dim)) {}
  static std::size_t bytes(std::int64_t layers, const AttentionArgs& a) {
    return static_cast<std::size_t>(layers * a.lq) * (a.head_dim + 2) * sizeof(float);
  }
};

// kPartial (the split route; never causal): the block sweeps key tiles [blockIdx.z * chunk_tiles,
// + chunk_tiles), which the launcher keeps inside the keys, and writes `partial` instead of out.
template <class C, bool kPartial>
__global__ void __launch_bounds__(C::kThreads, C::kMinBlocks)
    flash2_attention_kernel(const AttentionArgs a, const int chunk_tiles, float* const partial) {
  dependent_prologue();
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

  // Key tiles [first_tile, end_tile): all, or the split route's chunk (the launcher leaves none
  // empty). Tiles keep their index among all keys, ring slot included (tile % kStages), so the
  // bounds below are the unsplit kernel's. The split route is never causal: `kPartial ? false :
  // a.causal` drops the causal tests from its code. It is spelled out at each use because a local
  // flag changes the unsplit kernel's code enough for ptxas to spill (128-row blocks, D = 80).
  const int first_tile = kPartial ? static_cast<int>(blockIdx.z) * chunk_tiles : 0;
  int end_tile = (a.lk + C::kKeys - 1) / C::kKeys;
  if (kPartial) end_tile = min(end_tile, first_tile + chunk_tiles);
  if (kPartial ? false : a.causal)
    end_tile = min(end_tile, (q0 + C::kRows - 1) / C::kKeys + 1);  // no row sees past this

  // Lane parts of the ldmatrix addresses (halves). A operand / V (trans): matrices 0..3 are rows 0-7,
  // rows 8-15, rows 0-7 +8 columns, rows 8-15 +8 columns. K: keys 0-7, keys 0-7 +8 columns, keys 8-15,
  // keys 8-15 +8 columns (b0, b1 of two key n-tiles).
  const int a_lane = (lane % 8 + (lane / 8 % 2) * 8) * C::kPitch + lane / 16 * 8;
  const int k_lane = (lane % 8 + lane / 16 * 8) * C::kPitch + (lane / 8 % 2) * 8;
  const __half* sq_warp = sq + warp * C::kWarpRows * C::kPitch + a_lane;

  // Prologue: Q with the first tile, then the next kStages - 2, a commit group each (empty past the end).
  load_tile<C, C::kRows>(sq, q, q0, a.lq, stride, d);
#pragma unroll
  for (int s = 0; s < C::kStages - 1; ++s) {
    const int tile = first_tile + s;
    if (tile < end_tile) {
      __half* stage = skv + (tile % C::kStages) * C::kStageHalves;
      load_tile<C, C::kKeys>(stage, k, tile * C::kKeys, a.lk, stride, d);
      load_tile<C, C::kKeys>(stage + C::kTileHalves, v, tile * C::kKeys, a.lk, stride, d);
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

  for (int tile = first_tile; tile < end_tile; ++tile) {
    cp_async_wait<C::kStages - 2>();  // this tile's K and V (and, for the first, Q) landed for this thread
    __syncthreads();  // ... for every thread; and every warp is done with the stage refilled below
    {
      const int next = tile + C::kStages - 1;
      if (next < end_tile) {
        __half* stage = skv + (next % C::kStages) * C::kStageHalves;
        load_tile<C, C::kKeys>(stage, k, next * C::kKeys, a.lk, stride, d);
        load_tile<C, C::kKeys>(stage + C::kTileHalves, v, next * C::kKeys, a.lk, stride, d);
      }
      cp_async_commit();
    }
    const __half* sk = skv + (tile % C::kStages) * C::kStageHalves;
    const __half* sv = sk + C::kTileHalves;

    if (C::kQInRegs && tile == first_tile) {
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
    const bool mask =
        key0 + C::kKeys > a.lk || ((kPartial ? false : a.causal) && key0 + C::kKeys - 1 > warp_row0);
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
            if (key >= a.lk || ((kPartial ? false : a.causal) && key > row)) s[rt][nt][e] = -INFINITY;
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

  if constexpr (kPartial) {
    // The chunk's rows as they stand, for flash2_combine_kernel: float2 pairs of a fragment row's
    // channels (a quad's four lanes write 32 contiguous bytes), and the row's (max, sum) from its
    // quad's first lane. Rows past lq are dropped; channels past d are padding.
    const PartialRows rows(partial, std::int64_t{gridDim.z} * gridDim.y, a);
    const std::int64_t layer_row0 = (std::int64_t{blockIdx.z} * gridDim.y + blockIdx.y) * a.lq;
#pragma unroll
    for (int rt = 0; rt < C::kRowTiles; ++rt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float sum = l[rt][r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = warp_row0 + rt * 16 + group + r * 8;
        if (row >= a.lq) continue;
        if (quad_lane == 0) rows.ml[layer_row0 + row] = make_float2(m[rt][r], sum);
        float* o_row = rows.o + (layer_row0 + row) * d;
#pragma unroll
        for (int i = 0; i < C::kDTiles; ++i)
          if (i * 8 < d)
            *reinterpret_cast<float2*>(o_row + i * 8 + quad_lane * 2) = make_float2(o[rt][i][2 * r], o[rt][i][2 * r + 1]);
      }
    return;
  }

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

constexpr int kCombineRows = 8;  // rows (= warps) per block of the combine kernel

// The split route's second pass: out = sum_c 2^(m_c - M) o_c / sum_c 2^(m_c - M) l_c over the chunks
// c, M = max_c m_c; one warp per row of one (batch, head), lanes over channel pairs. A chunk whose
// row saw no key (m = -inf: never without causal masking, but it must not turn into NaN) weighs 0.
__global__ void __launch_bounds__(kCombineRows * 32)
    flash2_combine_kernel(const AttentionArgs a, const int chunks, float* const workspace) {
  dependent_prologue();
  const int row = blockIdx.x * kCombineRows + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= a.lq) return;
  const std::int64_t chunk_rows = std::int64_t{gridDim.y} * a.lq;  // rows of one chunk's layers
  const PartialRows rows(workspace, std::int64_t{chunks} * gridDim.y, a);
  const std::int64_t row0 = std::int64_t{blockIdx.y} * a.lq + row;  // the row in chunk 0
  float m_max = -INFINITY;
  for (int c = 0; c < chunks; ++c) m_max = fmaxf(m_max, rows.ml[row0 + c * chunk_rows].x);
  const float base = m_max == -INFINITY ? 0.0f : m_max;
  float sum = 0.0f;
  for (int c = 0; c < chunks; ++c) {
    const float2 ml = rows.ml[row0 + c * chunk_rows];
    sum += exp2f(ml.x - base) * ml.y;
  }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads, d = a.head_dim;
  __half* out = reinterpret_cast<__half*>(a.out) + (std::int64_t{b} * a.lq + row) * a.heads * d + std::int64_t{h} * d;
  for (int col = lane * 2; col < d; col += 64) {
    float x = 0.0f, y = 0.0f;
    for (int c = 0; c < chunks; ++c) {
      const float weight = exp2f(rows.ml[row0 + c * chunk_rows].x - base);
      const float2 o = *reinterpret_cast<const float2*>(rows.o + (row0 + c * chunk_rows) * d + col);
      x += weight * o.x;
      y += weight * o.y;
    }
    *reinterpret_cast<__half2*>(out + col) = __floats2half2_rn(x * inv, y * inv);
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

// Multiprocessors of the current device, asked once (the engine drives one device).
int multiprocessors() {
  static const int count = [] {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess)
      return 132;
    return n;
  }();
  return count;
}

// Key tiles per chunk at least where the split is automatic: each block still amortises its
// pipeline's prologue, and the partial rows stay small beside the keys and values.
constexpr int kMinChunkTiles = 4;

// How a launch covers the keys: `chunks` grid layers of `chunk_tiles` key tiles (the last chunk may
// hold fewer); one layer of all tiles when unsplit.
struct KeySplit {
  int chunks = 1;
  int chunk_tiles = 0;
};

// Automatic: split where the query blocks fill at most half of one wave (the multiprocessors times
// the blocks per multiprocessor the launch bounds are sized for; shared memory allows that many) and
// the keys span 2 * kMinChunkTiles tiles or more, into as many chunks as keep the grid within that
// one wave: a second, partly filled wave would cost a whole block's time again. Rounding the chunk
// up to whole tiles only lowers the count, so no chunk is empty and the grid stays within the wave.
// `on` splits wherever there are two tiles, into at least two chunks. Never causal.
template <class C>
KeySplit key_split(const AttentionArgs& a, AttentionSplit split) {
  const int tiles = (a.lk + C::kKeys - 1) / C::kKeys;
  const std::int64_t blocks = std::int64_t{(a.lq + C::kRows - 1) / C::kRows} * a.batch * a.heads;
  if (a.causal || split == AttentionSplit::off || tiles < 2 || blocks == 0) return {1, tiles};
  const std::int64_t wave = std::int64_t{multiprocessors()} * C::kMinBlocks;
  std::int64_t chunks = std::min<std::int64_t>(wave / blocks, tiles / kMinChunkTiles);
  if (split == AttentionSplit::on)
    chunks = std::clamp<std::int64_t>(chunks, 2, tiles);
  else if (chunks < 2)
    return {1, tiles};
  const int chunk_tiles = static_cast<int>((tiles + chunks - 1) / chunks);
  return {(tiles + chunk_tiles - 1) / chunk_tiles, chunk_tiles};
}

template <class C, bool kPartial>
cudaError_t launch_sweep(const AttentionArgs& a, const KeySplit& keys, float* partial, cudaStream_t stream) {
  const auto kernel = flash2_attention_kernel<C, kPartial>;
  // Opted in once per instantiation (the engine drives one device): the call costs host time.
  static const cudaError_t opted_in =
      C::kSharedBytes > 48 * 1024
          ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(C::kSharedBytes))
          : cudaSuccess;
  if (opted_in != cudaSuccess) return opted_in;
  const dim3 grid(static_cast<unsigned>((a.lq + C::kRows - 1) / C::kRows), static_cast<unsigned>(a.batch * a.heads),
                  static_cast<unsigned>(keys.chunks));
  launch_kernel(kernel, grid, C::kThreads, C::kSharedBytes, stream, a, keys.chunk_tiles, partial);
  return cudaGetLastError();
}

template <class C>
cudaError_t launch(const AttentionArgs& a, AttentionSplit split, void* workspace, cudaStream_t stream) {
  const KeySplit keys = key_split<C>(a, split);
  if (keys.chunks == 1) return launch_sweep<C, false>(a, keys, nullptr, stream);
  if (!workspace || !aligned16(workspace)) return cudaErrorInvalidValue;
  float* partial = static_cast<float*>(workspace);
  if (const cudaError_t status = launch_sweep<C, true>(a, keys, partial, stream); status != cudaSuccess) return status;
  const dim3 grid(static_cast<unsigned>((a.lq + kCombineRows - 1) / kCombineRows),
                  static_cast<unsigned>(a.batch * a.heads));
  launch_kernel(flash2_combine_kernel, grid, kCombineRows * 32, 0, stream, a, keys.chunks, partial);
  return cudaGetLastError();
}

template <class C>
struct BlockShape {
  using type = C;
};

template <int D, class Op>
auto with_width(Flash2Tile tile, const Op& op) {
  if (tile == Flash2Tile::rows64) return op(BlockShape<typename Rows64<D>::type>{});
  return op(BlockShape<typename Rows128<D>::type>{});
}

// op(BlockShape<C>{}) with the configuration of the arguments' head width and `tile`, where
// `automatic` takes 64-row blocks when 128-row ones would leave multiprocessors without a block.
template <class Op>
auto with_block_shape(const AttentionArgs& a, Flash2Tile tile, const Op& op) {
  if (tile == Flash2Tile::automatic) {
    const std::int64_t blocks = std::int64_t{(a.lq + 127) / 128} * a.batch * a.heads;
    tile = blocks < multiprocessors() ? Flash2Tile::rows64 : Flash2Tile::rows128;
  }
  const int d = a.head_dim;
  if (d <= 16) return with_width<16>(tile, op);
  if (d <= 32) return with_width<32>(tile, op);
  if (d <= 48) return with_width<48>(tile, op);
  if (d <= 64) return with_width<64>(tile, op);
  if (d <= 80) return with_width<80>(tile, op);
  if (d <= 96) return with_width<96>(tile, op);
  if (d <= 128) return with_width<128>(tile, op);
  return with_width<160>(tile, op);
}

}  // namespace

bool flash2_attention_can_implement(const AttentionArgs& a) {
  return a.head_dim % 8 == 0 && a.head_dim >= 8 && a.head_dim <= 160 && a.scale > 0.0f && std::isfinite(a.scale) &&
         aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.out);
}

std::size_t flash2_attention_workspace_bytes(const AttentionArgs& a, Flash2Tile tile, AttentionSplit split) {
  if (!flash2_attention_can_implement(a)) return 0;
  return with_block_shape(a, tile, [&](auto shape) {
    const KeySplit keys = key_split<typename decltype(shape)::type>(a, split);
    return keys.chunks == 1 ? std::size_t{0} : PartialRows::bytes(std::int64_t{keys.chunks} * a.batch * a.heads, a);
  });
}

cudaError_t flash2_attention(const AttentionArgs& a, cudaStream_t stream, Flash2Tile tile, AttentionSplit split,
                             void* workspace) {
  if (!flash2_attention_can_implement(a)) return cudaErrorNotSupported;
  return with_block_shape(a, tile, [&](auto shape) {
    return launch<typename decltype(shape)::type>(a, split, workspace, stream);
  });
}

}  // namespace fisedit::kernels
