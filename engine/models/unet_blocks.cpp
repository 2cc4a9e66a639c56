// The U-Net's layers on the backend, following diffusers' modules line by line (resnet.py,
// attention.py, attention_processor.py, transformer_2d.py, downsampling.py, upsampling.py).
#include "models/unet_blocks.h"

#include "core/env.h"
#include "core/error.h"

#include <cmath>

namespace fisedit::unet {

namespace {

// A 1x1 nn.Conv2d ([out, in, 1, 1]) as the Linear it is on channels-last activations.
Linear load_pointwise_conv(const WeightSource& w, const std::string& prefix, std::int64_t in, std::int64_t out) {
  return {w.backend().upload(w.host(prefix + ".weight", {out, in, 1, 1}).reshaped({out, in})),
          w.upload(prefix + ".bias", {out})};
}

}  // namespace

DeviceTensor group_norm(Backend& b, const GroupNorm& norm, NormKey key, const DeviceTensor& x, bool silu, SparseStep* s) {
  return s ? s->group_norm(b, key, x, norm.weight, norm.bias, norm.groups, norm.eps, silu) : norm.forward(b, x, silu);
}

DeviceTensor spatial(Backend& b, SparseStep* s, OutputKey key, const DeviceTensor& y, std::int64_t h, std::int64_t w) {
  return s ? s->spatial_output(b, key, y, h, w) : y;
}

namespace {

using Plan = SparseStep::Plan;

// A cross-attention block's resnet does not record its output (ResnetBlock2D::output_recorded): on
// since 2026-12-07; FISEDIT_TRANSIENT_RESNET_OUTPUTS=0 records it (the benchmark's comparison).
bool transient_resnet_outputs() {
  static const bool on = env_flag("FISEDIT_TRANSIENT_RESNET_OUTPUTS", true);
  return on;
}

Plan plan_of(Backend& b, SparseStep* s, std::int64_t h, std::int64_t w) { return s ? s->plan(b, h, w) : Plan::dense; }

// [N, H, W, C] -> [N, H * W, C]
DeviceTensor tokens(const DeviceTensor& x) { return x.reshaped({x.dim(0), x.dim(1) * x.dim(2), x.dim(3)}); }

// A GroupNorm (+SiLU) folded into a sparse convolution's gather, with the cached statistics: no pass
// over the whole input.
InputNorm gathered(SparseStep& s, const GroupNorm& norm, NormKey key, bool silu) {
  return {&norm.weight, &norm.bias, &s.cached_norm_stats(key), norm.groups, norm.eps, silu};
}

}  // namespace

DeviceTensor planned_conv(Backend& b, SparseStep* s, const Conv2d& conv, OutputKey key, const DeviceTensor& x,
                          std::int64_t ho, std::int64_t wo) {
  switch (plan_of(b, s, ho, wo)) {
    case Plan::cached: return s->cached_output(key);
    case Plan::sparse:
      return s->scatter_output(b, key, b.conv2d_at(x, conv.weight, conv.params, s->positions(b, ho, wo)), ho, wo);
    case Plan::dense: break;
  }
  return spatial(b, s, key, conv.forward(b, x), ho, wo);
}

ResnetBlock2D ResnetBlock2D::load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                                  std::int64_t in, std::int64_t out, std::int64_t temb_channels, int groups, float eps,
                                  bool feeds_transformer) {
  ResnetBlock2D r;
  r.norm1 = GroupNorm::load(w, prefix + ".norm1", in, groups, eps);
  r.conv1 = Conv2d::load(w, prefix + ".conv1", in, out, 3, Conv2dParams::same(1, 1));
  r.time_emb_proj = Linear::load(w, prefix + ".time_emb_proj", temb_channels, out);
  r.norm2 = GroupNorm::load(w, prefix + ".norm2", out, groups, eps);
  r.conv2 = Conv2d::load(w, prefix + ".conv2", out, out, 3, Conv2dParams::same(1, 1));
  if (in != out) r.conv_shortcut = Conv2d::load(w, prefix + ".conv_shortcut", in, out, 1, Conv2dParams::same(1, 0));
  r.norm1_key = layout.norm(prefix + ".norm1");
  r.conv1_key = layout.output(prefix + ".conv1");
  r.norm2_key = layout.norm(prefix + ".norm2");
  r.output_recorded = !feeds_transformer || !transient_resnet_outputs();
  if (r.output_recorded) r.conv2_key = layout.output(prefix + ".conv2");
  return r;
}

DeviceTensor ResnetBlock2D::forward(Backend& b, const DeviceTensor& input, const DeviceTensor& t, SparseStep* s,
                                    const DeviceTensor* skip) const {
  const auto H = input.dim(1), W = input.dim(2);
  const Plan plan = plan_of(b, s, H, W);
  if (plan == Plan::cached) {  // two outputs and two statistics, as a full run keeps them
    s->skip_group_norm(norm1_key);
    s->skip_group_norm(norm2_key);
    s->cached_output(conv1_key);
    return output_recorded ? s->cached_output(conv2_key) : DeviceTensor();
  }
  const auto temb = t.reshaped({t.dim(0), 1, 1, t.dim(1)});
  const auto joined = [&] { return skip ? b.concat_channels(input, *skip) : input; };  // [N, H, W, in], made
  if (plan == Plan::sparse) {
    const auto& at = s->positions(b, H, W);
    // The kept output of conv1 includes the time embedding (as the dense route's fused pass gives it).
    const auto norm1_at = gathered(*s, norm1, norm1_key, true);
    const auto h1 = b.conv2d_at(input, conv1.weight, conv1.params, at, &norm1_at, skip);  // [N, P, out]
    const auto temb_rows = temb.reshaped({t.dim(0), 1, t.dim(1)});
    const auto h = s->scatter_output(b, conv1_key, h1, H, W, &temb_rows);  // [N, H, W, out], the time embedding added
    const auto norm2_at = gathered(*s, norm2, norm2_key, true);
    const auto shortcut = conv_shortcut ? b.conv2d_at(input, conv_shortcut->weight, conv_shortcut->params, at, nullptr, skip)
                                        : b.gather_positions(tokens(joined()), at);  // [N, P, out]
    // The rows the transformer model reads, the shortcut added in the GEMM's epilogue.
    if (!output_recorded) return b.conv2d_at(h, conv2.weight, conv2.params, at, &norm2_at, nullptr, &shortcut);
    const auto y = b.conv2d_at(h, conv2.weight, conv2.params, at, &norm2_at);  // [N, P, out]
    return s->scatter_output(b, conv2_key, y, H, W, &shortcut);
  }
  const auto x = joined();
  // [N, H, W, in] -> [N, H, W, out], the time embedding broadcast over H, W in the convolution's pass
  const auto h = spatial(b, s, conv1_key, conv1.forward_add(b, group_norm(b, norm1, norm1_key, x, true, s), temb), H, W);
  const auto shortcut = conv_shortcut ? conv_shortcut->forward(b, x) : x;
  const auto y = conv2.forward_add(b, group_norm(b, norm2, norm2_key, h, true, s), shortcut);  // [N, H, W, out]
  return output_recorded ? spatial(b, s, conv2_key, y, H, W) : y;
}

namespace {

// A self-attention's Q, K and V weights as one tensor, and a sparse block's three projections as one
// GEMM (Backend::linear_group). On since measured (H100, 2026-12-07: the recorded 5% SD2 step 3.93 ->
// 3.81 ms); FISEDIT_QKV_GROUP=0 turns it off.
bool group_qkv() {
  static const bool on = env_flag("FISEDIT_QKV_GROUP", true);
  return on;
}

}  // namespace

Attention Attention::load(const WeightSource& w, const std::string& prefix, std::int64_t channels,
                          std::int64_t context_channels, int heads, bool upcast) {
  Attention a;
  if (context_channels == channels && group_qkv()) {  // one tensor, three views
    std::vector<float> joined;
    joined.reserve(static_cast<std::size_t>(3 * channels * channels));
    for (const char* part : {".to_q", ".to_k", ".to_v"}) {
      const auto values = w.host(prefix + part + ".weight", {channels, channels}).to_f32();
      joined.insert(joined.end(), values.begin(), values.end());
    }
    a.qkv = w.backend().upload(Tensor::from_f32({3, channels, channels}, joined));
    a.to_q.weight = a.qkv.slice_rows(0, 1).reshaped({channels, channels});
    a.to_k.weight = a.qkv.slice_rows(1, 2).reshaped({channels, channels});
    a.to_v.weight = a.qkv.slice_rows(2, 3).reshaped({channels, channels});
  } else {
    a.to_q = Linear::load(w, prefix + ".to_q", channels, channels, false);
    a.to_k = Linear::load(w, prefix + ".to_k", context_channels, channels, false);
    a.to_v = Linear::load(w, prefix + ".to_v", context_channels, channels, false);
  }
  a.to_out = Linear::load(w, prefix + ".to_out.0", channels, channels);
  a.params.heads = heads;
  a.params.scale = 1.0f / std::sqrt(static_cast<float>(channels / heads));
  a.params.upcast = upcast;
  return a;
}

std::pair<DeviceTensor, DeviceTensor> Attention::context_kv(Backend& b, const DeviceTensor& context) const {
  const std::lock_guard lock(memo->mutex);
  const auto& held = memo->context;
  if (held.empty() || held.buffer() != context.buffer() || held.offset() != context.offset() ||
      held.shape() != context.shape() || held.dtype() != context.dtype()) {
    memo->k = to_k.forward(b, context);  // [N, Lc, Cc] -> [N, Lc, C]
    memo->v = to_v.forward(b, context);
    memo->context = context;
  }
  return {memo->k, memo->v};
}

// [N, L, C] before the output projection
DeviceTensor Attention::attend(Backend& b, const DeviceTensor& x, const DeviceTensor& context, SparseStep* s) const {
  const auto q = to_q.forward(b, x);
  const auto [k, v] = context_kv(b, context);
  return s ? s->cross_attention(b, probs_key, q, k, v, params) : b.attention(q, k, v, params);
}

DeviceTensor Attention::forward(Backend& b, const DeviceTensor& x, const DeviceTensor& context, SparseStep* s) const {
  return to_out.forward(b, attend(b, x, context, s));  // [N, L, C]
}

DeviceTensor Attention::forward_add(Backend& b, const DeviceTensor& x, const DeviceTensor& context,
                                    const DeviceTensor& residual, SparseStep* s) const {
  return to_out.forward_add(b, attend(b, x, context, s), residual);  // [N, L, C]
}

BasicTransformerBlock BasicTransformerBlock::load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                                                  std::int64_t channels, std::int64_t context_channels, int heads,
                                                  bool upcast) {
  // diffusers' BasicTransformerBlock default; the U-Net's norm_eps is for its GroupNorms only.
  constexpr float kLayerNormEps = 1e-5f;
  const std::int64_t inner = 4 * channels;
  BasicTransformerBlock t;
  t.norm1 = LayerNorm::load(w, prefix + ".norm1", channels, kLayerNormEps);
  t.attn1 = Attention::load(w, prefix + ".attn1", channels, channels, heads, upcast);
  t.norm2 = LayerNorm::load(w, prefix + ".norm2", channels, kLayerNormEps);
  t.attn2 = Attention::load(w, prefix + ".attn2", channels, context_channels, heads, upcast);
  t.norm3 = LayerNorm::load(w, prefix + ".norm3", channels, kLayerNormEps);
  t.ff_proj = Linear::load(w, prefix + ".ff.net.0.proj", channels, 2 * inner);
  t.ff_out = Linear::load(w, prefix + ".ff.net.2", inner, channels);
  // Every query attends to every key: an edit reads them all.
  t.k_key = layout.output(prefix + ".attn1.to_k", RecordLayout::Reads::whole);
  t.v_key = layout.output(prefix + ".attn1.to_v", RecordLayout::Reads::whole);
  t.attn2.probs_key = layout.cross_attention(prefix + ".attn2");
  return t;
}

DeviceTensor BasicTransformerBlock::forward(Backend& b, const DeviceTensor& x, const DeviceTensor& context,
                                            std::int64_t height, std::int64_t width, SparseStep* s) const {
  auto h = norm1.forward(b, x);
  // Keys and values are kept so that an edit recomputes them at its active positions only.
  const auto k = spatial(b, s, k_key, attn1.to_k.forward(b, h), height, width);  // [N, L, C]
  const auto v = spatial(b, s, v_key, attn1.to_v.forward(b, h), height, width);
  auto y = attn1.to_out.forward_add(b, b.attention(attn1.to_q.forward(b, h), k, v, attn1.params), x);  // [N, L, C]
  y = attn2.forward_add(b, norm2.forward(b, y), context, y, s);  // cross-attention to the prompt
  h = b.geglu(ff_proj.forward(b, norm3.forward(b, y)));          // [N, L, C] -> [N, L, 8C] -> [N, L, 4C]
  return ff_out.forward_add(b, h, y);                            // [N, L, 4C] -> [N, L, C]
}

DeviceTensor BasicTransformerBlock::forward_active(Backend& b, const DeviceTensor& x, const DeviceTensor& context,
                                                   std::int64_t height, std::int64_t width, SparseStep& s) const {
  // Everything at the active positions: their keys and values replace the cached ones, and the
  // queries attend over the whole (cached + new) keys and values.
  const auto h = norm1.forward(b, x);                                           // [N, P, C]
  // The queries, keys and values of the active positions in one GEMM (few rows: three launches cost
  // more than their work).
  DeviceTensor q, k_new, v_new;
  if (!attn1.qkv.empty()) {
    const auto qkv = b.linear_group(h, attn1.qkv);  // [3, N, P, C]
    q = qkv.slice_rows(0, 1).reshaped(h.shape());
    k_new = qkv.slice_rows(1, 2).reshaped(h.shape());
    v_new = qkv.slice_rows(2, 3).reshaped(h.shape());
  } else {
    k_new = attn1.to_k.forward(b, h);
    v_new = attn1.to_v.forward(b, h);
    q = attn1.to_q.forward(b, h);
  }
  const OutputKey keys[] = {k_key, v_key};
  const DeviceTensor rows[] = {k_new, v_new};
  const auto kv = s.scatter_outputs(b, keys, rows, height, width);  // [N, L, C] each, one launch in place
  const auto& k = kv[0];
  const auto& v = kv[1];
  auto y = attn1.to_out.forward_add(
      b, b.attention(q, k.reshaped({x.dim(0), height * width, x.dim(2)}),
                     v.reshaped({x.dim(0), height * width, x.dim(2)}), attn1.params),
      x);  // [N, P, C]
  y = attn2.forward_add(b, norm2.forward(b, y), context, y);
  const auto f = b.geglu(ff_proj.forward(b, norm3.forward(b, y)));  // [N, P, 4C]
  return ff_out.forward_add(b, f, y);
}

Transformer2DModel Transformer2DModel::load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                                            std::int64_t channels, std::int64_t context_channels, const Options& o) {
  // Transformer2DModel's GroupNorm always uses eps 1e-6, whatever the U-Net's norm_eps.
  constexpr float kNormEps = 1e-6f;
  Transformer2DModel t;
  t.norm = GroupNorm::load(w, prefix + ".norm", channels, o.groups, kNormEps);
  t.norm_key = layout.norm(prefix + ".norm");
  if (o.linear_projection) {
    t.proj_in = Linear::load(w, prefix + ".proj_in", channels, channels);
    t.proj_out = Linear::load(w, prefix + ".proj_out", channels, channels);
  } else {
    t.proj_in = load_pointwise_conv(w, prefix + ".proj_in", channels, channels);
    t.proj_out = load_pointwise_conv(w, prefix + ".proj_out", channels, channels);
  }
  for (int i = 0; i < o.layers; ++i)
    t.transformer_blocks.push_back(BasicTransformerBlock::load(
        w, layout, prefix + ".transformer_blocks." + std::to_string(i), channels, context_channels, o.heads, o.upcast));
  t.out_key = layout.output(prefix);
  return t;
}

DeviceTensor Transformer2DModel::forward(Backend& b, const DeviceTensor& x, std::int64_t h, std::int64_t w,
                                         const DeviceTensor& context, SparseStep* s) const {
  const Plan plan = plan_of(b, s, h, w);
  const bool whole = !x.empty() && x.rank() == 4;
  if ((plan == Plan::dense && !whole) || (plan == Plan::sparse && x.empty()))
    throw Error(ErrorCode::invalid_argument, "Transformer2DModel: an input of " + shape_to_string(x.shape()) +
                                         " for a level " + std::to_string(h) + " x " + std::to_string(w) + " that runs " +
                                         (plan == Plan::dense ? "in full" : plan == Plan::cached ? "cached" : "sparse"));
  if (plan == Plan::cached) {
    s->skip_group_norm(norm_key);
    for (const auto& block : transformer_blocks) {
      s->cached_output(block.k_key);
      s->cached_output(block.v_key);
    }
    return s->cached_output(out_key);
  }
  if (plan == Plan::sparse) {  // the whole model at the active positions (the norm with cached statistics)
    const auto& at = s->positions(b, h, w);
    const auto xa = whole ? b.gather_positions(tokens(x), at) : x;  // [N, P, C]
    auto y = proj_in.forward(b, s->group_norm_at(b, norm_key, xa, norm.weight, norm.bias, norm.groups, norm.eps, false));
    for (const auto& block : transformer_blocks) y = block.forward_active(b, y, context, h, w, *s);
    return s->scatter_output(b, out_key, proj_out.forward_add(b, y, xa), h, w);  // [N, P, C] -> [N, H, W, C]
  }
  const auto n = x.dim(0), c = x.dim(3);
  // Channels-last, proj_in is the same matmul whether it was a Linear or a 1x1 Conv2d.
  auto y = proj_in.forward(b, group_norm(b, norm, norm_key, x, false, s)).reshaped({n, h * w, c});  // [N, H, W, C] -> [N, HW, C]
  for (const auto& block : transformer_blocks) y = block.forward(b, y, context, h, w, s);
  y = proj_out.forward_add(b, y, x.reshaped({n, h * w, c})).reshaped({n, h, w, c});  // [N, HW, C] -> [N, H, W, C]
  return spatial(b, s, out_key, y, h, w);
}

Downsample2D Downsample2D::load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                                std::int64_t channels) {
  return {Conv2d::load(w, prefix + ".conv", channels, channels, 3, Conv2dParams::same(2, 1)),
          layout.output(prefix + ".conv")};
}

DeviceTensor Downsample2D::forward(Backend& b, const DeviceTensor& x, SparseStep* s) const {
  // [N, H, W, C] -> [N, ceil(H/2), ceil(W/2), C] (3x3, stride 2, padding 1)
  return planned_conv(b, s, conv, out_key, x, (x.dim(1) + 1) / 2, (x.dim(2) + 1) / 2);
}

Upsample2D Upsample2D::load(const WeightSource& w, RecordLayout& layout, const std::string& prefix,
                            std::int64_t channels) {
  return {Conv2d::load(w, prefix + ".conv", channels, channels, 3, Conv2dParams::same(1, 1)),
          layout.output(prefix + ".conv")};
}

DeviceTensor Upsample2D::forward(Backend& b, const DeviceTensor& x, std::int64_t out_h, std::int64_t out_w,
                                 SparseStep* s) const {
  // [N, H, W, C] -> [N, out_h, out_w, C]
  return planned_conv(b, s, conv, out_key, b.upsample_nearest(x, out_h, out_w), out_h, out_w);
}

}  // namespace fisedit::unet
