#pragma once
// Multi-head attention forward, softmax(scale q k^T) v, without materialising the score matrix.
// Heads sit side by side in the channel dimension ([B, L, heads * D], as the projections give them),
// so nothing is transposed. Scores, softmax statistics and the output accumulate in float32 in
// every path, which is what an fp16 model's "upcast attention" (SD2) asks for.
//
// Three kernels:
// - flash2 (attention_flash2.cu), the default: the flash structure below with 128 query rows per
//   block (4 warps x 32 rows), K and V in a cp.async ring, the scale folded into the exponent; same
//   head widths and alignment, and a finite scale > 0 (anything else goes to flash).
// - flash (attention_flash.cu): tensor cores (mma.sync m16n8k16, fp16 in, fp32 accumulate) with an
//   online softmax over 64-key tiles, for head widths that are multiples of 8 up to 160 (padded to
//   the next instantiated width: 16, 32, 48, 64, 80, 96, 128, 160) and 16-byte aligned tensors.
//   The probabilities are rounded to fp16 for the P.V product, as torch does after an upcast softmax.
// - fallback (attention.cu): CUDA cores, one warp per query row, any head width whose working set
//   fits in shared memory (D <= ~1100 on sm_80/sm_90), any alignment.
// All take any Lq, Lk >= 1 and causal masking (query i sees keys j <= i, top-left aligned).
//
// The environment variable FISEDIT_ATTENTION (read once per process) picks the tensor-core kernel:
// unset, "auto" or "flash2": flash2 with its block shape chosen from the grid size (64-row blocks
// when 128-row ones would not give every multiprocessor one); "flash2-rows128" / "flash2-rows64":
// flash2 with that block shape always; "legacy": the flash kernel (attention_flash.cu) wherever
// flash2 would run, to isolate a fault or compare speeds.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

struct AttentionArgs {
  const std::uint16_t* q = nullptr;  // [batch, lq, heads * head_dim] IEEE half bits
  const std::uint16_t* k = nullptr;  // [batch, lk, heads * head_dim]
  const std::uint16_t* v = nullptr;  // [batch, lk, heads * head_dim]
  std::uint16_t* out = nullptr;      // [batch, lq, heads * head_dim]
  int batch = 0, heads = 0, head_dim = 0;
  int lq = 0, lk = 0;
  float scale = 1.0f;  // applied to q . k before the softmax
  bool causal = false;
};

enum class AttentionPath { flash2, flash, fallback, unsupported };

// "flash2", "flash (legacy)", "fallback", "unsupported".
const char* attention_path_name(AttentionPath path);

// Which kernel `attention` runs for these arguments on the current device (unsupported: the
// fallback's shared memory for this head width exceeds the device's limit).
AttentionPath attention_path(const AttentionArgs& args);

// Shared memory the fallback needs for a head width (bytes), for error messages.
std::size_t attention_fallback_shared_bytes(int head_dim);

// Enqueues the attention on `stream`. cudaErrorNotSupported for an unsupported path,
// cudaErrorInvalidValue for bad sizes.
cudaError_t attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace fisedit::kernels
