#pragma once
// The layers of diffusers' UNet2DConditionModel, named after their diffusers modules (ResnetBlock2D,
// Transformer2DModel, ...) so that each one loads its weights from the prefix diffusers gives it.
// Private to engine/models/unet.cpp: the U-Net is the public interface. Built of the leaf modules of
// models/layers.h; every layer uploads its weights once, when it is loaded.
//
// Every forward takes a SparseStep (null for a plain dense call) that records or replays the outputs
// of the 3x3 convolutions, the blocks and the self-attention keys and values, and the GroupNorm
// statistics: see edit/sparse_step.h. Each recording layer takes its keys from the U-Net's
// RecordLayout when it is loaded, named after its weights. In an edit a block runs as its level's plan says: in full,
// not at all (its cached outputs), or at the active positions (convolutions and every token-wise
// layer; the self-attention's active queries attend over the cached keys and values with the active
// positions' replaced).
#include "backend/backend.h"
#include "models/layers.h"
#include "edit/sparse_step.h"

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fisedit::unet {

// A GroupNorm as the step calls for (cached statistics in an edit), or plainly without a step.
DeviceTensor group_norm(Backend& b, const GroupNorm& norm, NormKey key, const DeviceTensor& x, bool silu, SparseStep* s);
// A spatial layer's output [N, H, W, C] (or [N, h * w, C]) kept or blended by the step.
DeviceTensor spatial(Backend& b, SparseStep* s, OutputKey key, const DeviceTensor& y, std::int64_t h, std::int64_t w);
// A convolution whose output is ho x wo, run as the step plans it: in full, not at all (the cached
// output), or at the active positions only.
DeviceTensor planned_conv(Backend& b, SparseStep* s, const Conv2d& conv, OutputKey key, const DeviceTensor& x,
                          std::int64_t ho, std::int64_t wo);

// norm1 + SiLU -> conv1 -> + time_emb_proj(SiLU(temb)) -> norm2 + SiLU -> conv2 -> + shortcut.
struct ResnetBlock2D {
  GroupNorm norm1, norm2;
  Conv2d conv1, conv2;
  Linear time_emb_proj;
  std::optional<Conv2d> conv_shortcut;  // 1x1, where the channel count changes
  NormKey norm1_key, norm2_key;          // record keys
  OutputKey conv1_key, conv2_key;        // conv1's output (time embedding added) and the block's
  // The block's output is recorded (conv2_key) unless a transformer model of the same level reads it
  // (a cross-attention block's resnet): that model reads its input only at the active positions
  // (its norm with cached statistics, token-wise layers, the residual; keys and values are its own
  // records), so no step reads this output at an inactive one.
  bool output_recorded = true;
  std::size_t time_index = 0;            // its part of the U-Net's time projections (UNet::time_projections)

  static ResnetBlock2D load(const WeightSource& w, RecordLayout& layout, const std::string& prefix, std::int64_t in,
                            std::int64_t out, std::int64_t temb_channels, int groups, float eps,
                            bool feeds_transformer = false);
  // x [N, H, W, in], temb [N, out]: this block's time embedding, time_emb_proj(SiLU(the U-Net's temb))
  // -> [N, H, W, out]; without output_recorded, as Transformer2DModel::forward takes it: in a sparse
  // plan its rows at the active positions [N, P, out], in a cached plan nothing (empty), in full the
  // whole output.
  // With `skip` [N, H, W, Cs] (the up path's), the input is x's channels followed by its: made for a
  // full pass, read from both by a sparse one, not at all by a cached one.
  DeviceTensor forward(Backend& b, const DeviceTensor& x, const DeviceTensor& temb, SparseStep* s,
                       const DeviceTensor* skip = nullptr) const;
};

// Multi-head attention with diffusers' Attention names: to_q/to_k/to_v without bias, to_out.0 with.
struct Attention {
  Linear to_q, to_k, to_v, to_out;
  // A self-attention's query, key and value weights as one [3, C, C] tensor (to_q, to_k and to_v's
  // weights are views of it), for Backend::linear_group; empty for a cross-attention.
  DeviceTensor qkv;
  AttentionParams params;
  // The keys and values of the last context seen (a cross-attention's prompt embedding): every step
  // of a generation passes the same context tensor, so they are projected once, not per step. The
  // memo holds the context itself, so its storage (the key) cannot be reused for another tensor.
  struct ContextMemo {
    std::mutex mutex;
    DeviceTensor context, k, v;
  };
  std::shared_ptr<ContextMemo> memo = std::make_shared<ContextMemo>();
  ProbsKey probs_key;  // a cross-attention's probabilities in the record (SparseStep::cross_attention)

  static Attention load(const WeightSource& w, const std::string& prefix, std::int64_t channels,
                        std::int64_t context_channels, int heads, bool upcast);
  // x [N, L, C], context [N, Lc, context_channels] -> [N, L, C]; the step (if any) may run the
  // attention through explicit probabilities (SparseStep::cross_attention).
  DeviceTensor forward(Backend& b, const DeviceTensor& x, const DeviceTensor& context, SparseStep* s = nullptr) const;
  // forward() + residual [N, L, C], the residual connection in the output projection's pass.
  DeviceTensor forward_add(Backend& b, const DeviceTensor& x, const DeviceTensor& context,
                           const DeviceTensor& residual, SparseStep* s = nullptr) const;
  // A cross-attention's keys and values of `context` made now (the memo), so that a recorded call
  // finds them instead of recording their projection (Backend::record).
  void prepare_context(Backend& b, const DeviceTensor& context) const { context_kv(b, context); }

private:
  // to_k(context), to_v(context), from the memo when the context is the one it holds.
  std::pair<DeviceTensor, DeviceTensor> context_kv(Backend& b, const DeviceTensor& context) const;
  DeviceTensor attend(Backend& b, const DeviceTensor& x, const DeviceTensor& context, SparseStep* s) const;
};

// LayerNorm -> self-attention, LayerNorm -> cross-attention, LayerNorm -> GEGLU feed-forward; each
// added to its input.
struct BasicTransformerBlock {
  LayerNorm norm1, norm2, norm3;
  Attention attn1, attn2;
  Linear ff_proj;  // ff.net.0.proj: C -> 2 * 4C (value and gate)
  Linear ff_out;   // ff.net.2: 4C -> C
  // The outputs a run keeps: the self-attention's keys and values. Nothing else of the block is read
  // at an inactive position: the block's later outputs are token-wise in its input and
  // self-attention, so only the enclosing Transformer2DModel's output is kept (and blended).
  OutputKey k_key, v_key;

  static BasicTransformerBlock load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                                    std::int64_t channels, std::int64_t context_channels, int heads, bool upcast);

  // x [N, L = h * w, C], context [N, Lc, context_channels] -> [N, L, C]. With an edit's partly
  // covered level (a dense plan), only the keys and values are blended with the cached ones; the
  // output is exact at the active positions, and the caller blends it.
  DeviceTensor forward(Backend& b, const DeviceTensor& x, const DeviceTensor& context, std::int64_t h, std::int64_t w,
                       SparseStep* s) const;
  // An edit's sparse run: x [N, P, C] at the level's active positions -> [N, P, C], keeping the full
  // keys and values (cached ones with the new ones scattered in) for later edits.
  DeviceTensor forward_active(Backend& b, const DeviceTensor& x, const DeviceTensor& context, std::int64_t h,
                              std::int64_t w, SparseStep& s) const;
};

// GroupNorm -> proj_in -> transformer blocks over the H*W positions -> proj_out -> + input.
struct Transformer2DModel {
  GroupNorm norm;
  Linear proj_in, proj_out;
  std::vector<BasicTransformerBlock> transformer_blocks;
  NormKey norm_key;
  OutputKey out_key;

  struct Options {
    int heads = 8;
    int layers = 1;
    int groups = 32;
    bool linear_projection = false;  // SD2: nn.Linear; SD1: 1x1 nn.Conv2d (same maths, other shape)
    bool upcast = false;
  };
  static Transformer2DModel load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                                 std::int64_t channels, std::int64_t context_channels, const Options& options);
  // x [N, h, w, C], context [N, Lc, context_channels] -> [N, h, w, C]. In an edit x may also be what a
  // resnet that does not record its output gives (ResnetBlock2D::output_recorded): its rows at the
  // level's active positions [N, P, C] for a sparse plan, nothing for a cached one.
  DeviceTensor forward(Backend& b, const DeviceTensor& x, std::int64_t h, std::int64_t w, const DeviceTensor& context,
                       SparseStep* s) const;
};

// 3x3 convolution, stride 2, padding 1.
struct Downsample2D {
  Conv2d conv;
  OutputKey out_key;
  static Downsample2D load(const WeightSource& w, RecordLayout& layout, const std::string& prefix, std::int64_t channels);
  // [N, H, W, C] -> [N, H/2, W/2, C]
  DeviceTensor forward(Backend& b, const DeviceTensor& x, SparseStep* s) const;
};

// Nearest-neighbour 2x, then a 3x3 convolution.
struct Upsample2D {
  Conv2d conv;
  OutputKey out_key;
  static Upsample2D load(const WeightSource& w, RecordLayout& layout, const std::string& prefix, std::int64_t channels);
  // [N, H, W, C] -> [N, out_h, out_w, C] (2H, 2W but where the down path halved an odd size)
  DeviceTensor forward(Backend& b, const DeviceTensor& x, std::int64_t out_h, std::int64_t out_w, SparseStep* s) const;
};

}  // namespace fisedit::unet
