#pragma once
// The second tensor-core attention kernel behind kernels::attention (see attention.cuh for the
// contract): 128 query rows per block (4 warps x 32 rows for head widths up to 128, so every K and V
// fragment read from shared memory feeds twice the mma work of attention_flash.cu), K and V streamed
// together through a multi-stage cp.async ring, the softmax scale folded into one FFMA before ex2.
// attention_flash.cu stays as the fallback (FISEDIT_ATTENTION=legacy selects it).
#include "attention.cuh"

namespace fisedit::kernels {

// The block shapes of this kernel; `automatic` picks one from the grid size (see attention_flash2.cu).
enum class Flash2Tile { automatic, rows128, rows64 };

// Whether this kernel takes these arguments: what flash_attention_can_implement asks (head_dim % 8
// == 0, head_dim <= 160, 16-byte aligned pointers) and a finite positive scale (the row maxima are
// taken on the unscaled scores).
bool flash2_attention_can_implement(const AttentionArgs& args);

// Enqueues the kernel; the caller checked flash2_attention_can_implement.
cudaError_t flash2_attention(const AttentionArgs& args, cudaStream_t stream, Flash2Tile tile = Flash2Tile::automatic);

}  // namespace fisedit::kernels
