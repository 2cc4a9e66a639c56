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
// Split keys (flash2, never causal): a sparse edit's self-attention has few queries against every key
// (a few hundred rows against Lk = 9216), so the grid of query blocks leaves most multiprocessors idle
// while each block sweeps all keys. Where the grid fills at most half of the blocks the device holds
// at once and the keys span 8 tiles or more, the keys are cut into chunks of whole tiles, as many as
// fill the device once: each block leaves its rows' unnormalised float32 output and softmax
// statistics (maximum, sum) for its chunk in a workspace (attention_workspace_bytes), and a second
// kernel merges the chunks of each row (rescaled to the largest maximum, divided by the total sum).
//
// The environment variable FISEDIT_ATTENTION (read once per process) picks the tensor-core kernel:
// unset, "auto" or "flash2": flash2 with its block shape chosen from the grid size (64-row blocks
// when 128-row ones would not give every multiprocessor one); "flash2-rows128" / "flash2-rows64":
// flash2 with that block shape always; "legacy": the flash kernel (attention_flash.cu) wherever
// flash2 would run, to isolate a fault or compare speeds. FISEDIT_ATTENTION_SPLIT (read once per
// process) picks whether flash2 splits the keys where AttentionArgs::split leaves it to the
// environment: unset or "auto": as above; "off": never; "on": wherever the keys span two tiles or
// more (without causal masking), to test the route.
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace fisedit::kernels {

// Whether flash2 splits the keys across blocks (see above): `environment` follows
// FISEDIT_ATTENTION_SPLIT; the others override it, for tests that compare the routes.
enum class AttentionSplit { environment, automatic, off, on };

struct AttentionArgs {
  const std::uint16_t* q = nullptr;  // [batch, lq, heads * head_dim] IEEE half bits
  const std::uint16_t* k = nullptr;  // [batch, lk, heads * head_dim]
  const std::uint16_t* v = nullptr;  // [batch, lk, heads * head_dim]
  std::uint16_t* out = nullptr;      // [batch, lq, heads * head_dim]
  int batch = 0, heads = 0, head_dim = 0;
  int lq = 0, lk = 0;
  float scale = 1.0f;  // applied to q . k before the softmax
  bool causal = false;
  AttentionSplit split = AttentionSplit::environment;
};

enum class AttentionPath { flash2, flash, fallback, unsupported };

// "flash2", "flash (legacy)", "fallback", "unsupported".
const char* attention_path_name(AttentionPath path);

// Which kernel `attention` runs for these arguments on the current device (unsupported: the
// fallback's shared memory for this head width exceeds the device's limit).
AttentionPath attention_path(const AttentionArgs& args);

// Shared memory the fallback needs for a head width (bytes), for error messages.
std::size_t attention_fallback_shared_bytes(int head_dim);

// Bytes of device workspace (16-byte aligned) `attention` needs for these arguments on the current
// device: 0 when the keys are not split, and then none need be given.
std::size_t attention_workspace_bytes(const AttentionArgs& args);

// Enqueues the attention on `stream`, with `workspace` of attention_workspace_bytes(args) (used on
// the stream only: it may be released once the work is enqueued, in stream order).
// cudaErrorNotSupported for an unsupported path, cudaErrorInvalidValue for bad sizes or a missing
// workspace.
cudaError_t attention(const AttentionArgs& args, cudaStream_t stream, void* workspace = nullptr);

}  // namespace fisedit::kernels
