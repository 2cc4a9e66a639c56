#pragma once
// The second tensor-core attention kernel behind kernels::attention (see attention.cuh for the
// contract): 128 query rows per block (4 warps x 32 rows for head widths up to 128, so every K and V
// fragment read from shared memory feeds twice the mma work of attention_flash.cu), K and V streamed
// together through a multi-stage cp.async ring, the softmax scale folded into one FFMA before ex2.
// attention_flash.cu stays as the fallback (FISEDIT_ATTENTION=legacy selects it).
#include "attention.cuh"

#include <cstddef>

namespace fisedit::kernels {

// The block shapes of this kernel; `automatic` picks one from the grid size (see attention_flash2.cu).
enum class Flash2Tile { automatic, rows128, rows64 };

// Whether this kernel takes these arguments: what flash_attention_can_implement asks (head_dim % 8
// == 0, head_dim <= 160, 16-byte aligned pointers) and a finite positive scale (the row maxima are
// taken on the unscaled scores).
bool flash2_attention_can_implement(const AttentionArgs& args);

// The float32 workspace flash2_attention needs with this tile and split choice (bytes; 0 when the keys
// are not split). `split` is what the dispatcher resolved: `environment` reads as `automatic`.
std::size_t flash2_attention_workspace_bytes(const AttentionArgs& args, Flash2Tile tile, AttentionSplit split);

// Enqueues the kernel (and the merge of the key chunks when split); the caller checked
// flash2_attention_can_implement. cudaErrorInvalidValue when the keys are split and `workspace`
// (16-byte aligned, flash2_attention_workspace_bytes long) is missing.
cudaError_t flash2_attention(const AttentionArgs& args, cudaStream_t stream, Flash2Tile tile, AttentionSplit split,
                             void* workspace);

}  // namespace fisedit::kernels
