#pragma once
// The tensor-core attention kernel behind kernels::attention (see attention.cuh for the contract).
#include "attention.cuh"

namespace fisedit::kernels {

// Whether the flash kernel takes these arguments: head_dim % 8 == 0, head_dim <= 160, 16-byte
// aligned pointers (so every 8-channel chunk of a head is one 16-byte load).
bool flash_attention_can_implement(const AttentionArgs& args);

// Enqueues the flash kernel; the caller checked flash_attention_can_implement.
cudaError_t flash_attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace fisedit::kernels
