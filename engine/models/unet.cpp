// UNet2DConditionModel: time embedding, conv_in, the down path (pushing every resnet and downsampler
// output as a skip), the mid block, the up path (popping them), conv_norm_out + SiLU, conv_out.
// Follows diffusers' unet_2d_condition.py and unet_2d_blocks.py.
#include "models/unet.h"

#include "core/error.h"
#include "models/unet_blocks.h"

#include <cmath>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fisedit {
namespace {

using namespace unet;

// Each resnet's time embedding [N, out], by ResnetBlock2D::time_index: views of UNet::time_projections.
using TimeParts = std::vector<DeviceTensor>;

// CrossAttnDownBlock2D, or DownBlock2D when it has no attentions.
struct DownBlock {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;  // one per resnet, or none
  std::optional<Downsample2D> downsampler;     // all levels but the last

  // [N, H, W, Cin] -> [N, H/2, W/2, C] (H, W kept on the last level); pushes each output onto `skips`.
  DeviceTensor forward(Backend& b, DeviceTensor h, const TimeParts& temb, const DeviceTensor& context,
                       std::vector<DeviceTensor>& skips, SparseStep* s) const {
    for (std::size_t i = 0; i < resnets.size(); ++i) {
      const auto height = h.dim(1), width = h.dim(2);
      h = resnets[i].forward(b, h, temb[resnets[i].time_index], s);
      if (!attentions.empty()) h = attentions[i].forward(b, h, height, width, context, s);
      skips.push_back(h);
    }
    if (downsampler) {
      h = downsampler->forward(b, h, s);
      skips.push_back(h);
    }
    return h;
  }
};

// UNetMidBlock2DCrossAttn: resnet, transformer, resnet.
struct MidBlock {
  std::vector<ResnetBlock2D> resnets;
  Transformer2DModel attention;

  // [N, H, W, C] -> [N, H, W, C]
  DeviceTensor forward(Backend& b, DeviceTensor h, const TimeParts& temb, const DeviceTensor& context,
                       SparseStep* s) const {
    const auto height = h.dim(1), width = h.dim(2);
    h = resnets[0].forward(b, h, temb[resnets[0].time_index], s);
    h = attention.forward(b, h, height, width, context, s);
    return resnets[1].forward(b, h, temb[resnets[1].time_index], s);
  }
};

// CrossAttnUpBlock2D, or UpBlock2D when it has no attentions.
struct UpBlock {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2DModel> attentions;
  std::optional<Upsample2D> upsampler;  // all levels but the last

  // [N, H, W, Cin] -> [N, Hs, Ws, C], the size of the next level's skip (2H, 2W unless H or W was odd
  // on the way down), or H, W on the last level; pops one skip per resnet.
  DeviceTensor forward(Backend& b, DeviceTensor h, const TimeParts& temb, const DeviceTensor& context,
                       std::vector<DeviceTensor>& skips, SparseStep* s) const {
    for (std::size_t i = 0; i < resnets.size(); ++i) {
      // [N, H, W, Ch] with the skip [N, H, W, Cs]: [N, H, W, Ch + Cs] in
      const auto height = h.dim(1), width = h.dim(2);
      h = resnets[i].forward(b, h, temb[resnets[i].time_index], s, &skips.back());
      skips.pop_back();
      if (!attentions.empty()) h = attentions[i].forward(b, h, height, width, context, s);
    }
    if (!upsampler) return h;
    return upsampler->forward(b, h, skips.back().dim(1), skips.back().dim(2), s);
  }
};

// TimestepEmbedding: linear_1 -> SiLU -> linear_2.
struct TimestepEmbedding {
  Linear linear_1, linear_2;
};

void require_supported(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::unsupported, "U-Net: " + what + " (fisedit runs Stable Diffusion 1.x and 2.x U-Nets)");
}

void require_input(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::invalid_argument, "U-Net: " + what);
}

}  // namespace

std::vector<float> timestep_embedding(std::span<const float> timesteps, int dim, bool flip_sin_to_cos, int freq_shift) {
  // Each step rounded to float32 in torch's order, so the embedding matches diffusers' to the last
  // bits its float32 sin/cos/exp allow.
  const int half = dim / 2;
  const float log_max_period = static_cast<float>(std::log(10000.0));
  std::vector<float> freqs(static_cast<std::size_t>(half));
  for (int i = 0; i < half; ++i)
    freqs[static_cast<std::size_t>(i)] =
        std::exp(-log_max_period * static_cast<float>(i) / static_cast<float>(half - freq_shift));
  // An odd dim leaves the last column zero, as diffusers pads it.
  std::vector<float> out(timesteps.size() * static_cast<std::size_t>(dim), 0.0f);
  for (std::size_t b = 0; b < timesteps.size(); ++b) {
    float* row = out.data() + b * static_cast<std::size_t>(dim);
    for (int i = 0; i < half; ++i) {
      const float arg = timesteps[b] * freqs[static_cast<std::size_t>(i)];
      row[flip_sin_to_cos ? half + i : i] = std::sin(arg);
      row[flip_sin_to_cos ? i : half + i] = std::cos(arg);
    }
  }
  return out;
}

struct UNet::Layers {
  TimestepEmbedding time_embedding;
  Conv2d conv_in;
  std::vector<DownBlock> down_blocks;
  MidBlock mid_block;
  std::vector<UpBlock> up_blocks;
  GroupNorm conv_norm_out;
  Conv2d conv_out;
  // The keys of every entry a step record holds (edit/sparse_step.h), handed out as the layers load.
  RecordLayout record;
  OutputKey conv_in_key, conv_out_key;
  NormKey conv_norm_out_key;
  // Every resnet by time_index (down, mid, up), and where its part of the time projections begins
  // (in rows of one batch element's values: part i is [N, out_i] at offset N * time_offsets[i]).
  std::vector<const ResnetBlock2D*> time_order;
  std::vector<std::int64_t> time_offsets;
  std::int64_t time_channels = 0;  // the sum of every resnet's out channels
  // UNet::time_projections of recent timesteps, by their per-row values (a generation's steps fill it,
  // an edit's steps of the same timesteps find it); the oldest goes first beyond kTimeMemoSize.
  std::mutex time_mutex;
  std::map<std::vector<float>, DeviceTensor> time_memo;
  std::deque<std::vector<float>> time_memo_order;
};

namespace {
constexpr std::size_t kTimeMemoSize = 256;
}  // namespace

UNet::UNet(Backend& backend, const UNetConfig& config, const WeightMap& weights)
    : backend_(&backend), config_(config), layers_(std::make_unique<Layers>()) {
  const auto& c = config_;
  const std::size_t levels = c.block_out_channels.size();
  require_supported(levels > 0 && c.down_block_types.size() == levels && c.up_block_types.size() == levels &&
                        c.num_attention_heads.size() == levels,
                    "block_out_channels, block types and head counts must list every level");
  require_supported(c.mid_block_type == "UNetMidBlock2DCrossAttn", "mid block type " + c.mid_block_type);
  for (const auto& t : c.down_block_types)
    require_supported(t == "CrossAttnDownBlock2D" || t == "DownBlock2D", "down block type " + t);
  for (const auto& t : c.up_block_types)
    require_supported(t == "CrossAttnUpBlock2D" || t == "UpBlock2D", "up block type " + t);
  require_supported(c.transformer_layers_per_block >= 1, "transformer_layers_per_block must be positive");

  const WeightSource w(backend, weights, "U-Net");
  auto& L = *layers_;
  const std::int64_t c0 = c.block_out_channels[0], temb = c.time_embed_dim(), context = c.cross_attention_dim;
  const int groups = c.norm_num_groups, lpb = c.layers_per_block;
  const auto transformer = [&](int heads) {
    return Transformer2DModel::Options{heads, c.transformer_layers_per_block, groups, c.use_linear_projection,
                                       c.upcast_attention};
  };

  L.time_embedding.linear_1 = Linear::load(w, "time_embedding.linear_1", c0, temb);
  L.time_embedding.linear_2 = Linear::load(w, "time_embedding.linear_2", temb, temb);
  L.conv_in = Conv2d::load(w, "conv_in", c.in_channels, c0, 3, Conv2dParams::same(1, 1));
  L.conv_in_key = L.record.output("conv_in");

  std::int64_t channels = c0;
  for (std::size_t level = 0; level < levels; ++level) {
    const auto prefix = "down_blocks." + std::to_string(level);
    const std::int64_t out = c.block_out_channels[level];
    DownBlock block;
    for (int i = 0; i < lpb; ++i) {
      const auto index = std::to_string(i);
      const bool cross = c.down_block_types[level] == "CrossAttnDownBlock2D";
      block.resnets.push_back(ResnetBlock2D::load(w, L.record, prefix + ".resnets." + index, i == 0 ? channels : out, out, temb,
                                                  groups, c.norm_eps, cross));
      if (cross)
        block.attentions.push_back(Transformer2DModel::load(w, L.record, prefix + ".attentions." + index, out,
                                                            context, transformer(c.num_attention_heads[level])));
    }
    if (level + 1 < levels) block.downsampler = Downsample2D::load(w, L.record, prefix + ".downsamplers.0", out);
    L.down_blocks.push_back(std::move(block));
    channels = out;
  }

  const std::int64_t mid = c.block_out_channels.back();
  for (int i = 0; i < 2; ++i)
    L.mid_block.resnets.push_back(
        ResnetBlock2D::load(w, L.record, "mid_block.resnets." + std::to_string(i), mid, mid, temb, groups, c.norm_eps, i == 0));
  L.mid_block.attention =
      Transformer2DModel::load(w, L.record, "mid_block.attentions.0", mid, context, transformer(c.num_attention_heads.back()));

  // Up level i mirrors down level (levels - 1 - i). Its resnet j takes the running channels plus a
  // skip: the down level's resnet outputs, and last the skip from one level up (the previous level's
  // downsampler output, or conv_in's at the top).
  for (std::size_t i = 0; i < levels; ++i) {
    const std::size_t mirror = levels - 1 - i;
    const auto prefix = "up_blocks." + std::to_string(i);
    const std::int64_t out = c.block_out_channels[mirror];
    const std::int64_t skip_from_above = c.block_out_channels[mirror == 0 ? 0 : mirror - 1];
    UpBlock block;
    for (int j = 0; j <= lpb; ++j) {
      const auto index = std::to_string(j);
      const std::int64_t skip = j == lpb ? skip_from_above : out;
      const bool cross = c.up_block_types[i] == "CrossAttnUpBlock2D";
      block.resnets.push_back(ResnetBlock2D::load(w, L.record, prefix + ".resnets." + index, channels + skip, out, temb,
                                                  groups, c.norm_eps, cross));
      if (cross)
        block.attentions.push_back(Transformer2DModel::load(w, L.record, prefix + ".attentions." + index, out,
                                                            context, transformer(c.num_attention_heads[mirror])));
      channels = out;
    }
    if (i + 1 < levels) block.upsampler = Upsample2D::load(w, L.record, prefix + ".upsamplers.0", out);
    L.up_blocks.push_back(std::move(block));
  }

  L.conv_norm_out = GroupNorm::load(w, "conv_norm_out", c0, groups, c.norm_eps);
  L.conv_out = Conv2d::load(w, "conv_out", c0, c.out_channels, 3, Conv2dParams::same(1, 1));
  L.conv_norm_out_key = L.record.norm("conv_norm_out");
  L.conv_out_key = L.record.output("conv_out", RecordLayout::Reads::whole);  // the prediction, read whole

  const auto number = [&](std::vector<ResnetBlock2D>& resnets) {
    for (auto& r : resnets) {
      r.time_index = L.time_order.size();
      L.time_order.push_back(&r);
      L.time_offsets.push_back(L.time_channels);
      L.time_channels += r.time_emb_proj.weight.dim(0);
    }
  };
  for (auto& block : L.down_blocks) number(block.resnets);
  number(L.mid_block.resnets);
  for (auto& block : L.up_blocks) number(block.resnets);
}

UNet::~UNet() = default;
OutputKey UNet::prediction_key() const { return layers_->conv_out_key; }
UNet::UNet(UNet&&) noexcept = default;
UNet& UNet::operator=(UNet&&) noexcept = default;

DeviceTensor UNet::forward(const DeviceTensor& sample, std::span<const float> timesteps, const DeviceTensor& context,
                           SparseStep* s) {
  require_input(sample.rank() == 4 && sample.dim(0) >= 1,
                "sample " + shape_to_string(sample.shape()) + " is not [N, H, W, " + std::to_string(config_.in_channels) + "]");
  return forward_projected(sample, time_projections(timesteps, sample.dim(0)), context, s);
}

DeviceTensor UNet::time_projections(const DeviceTensor& sinusoids) {
  Backend& b = *backend_;
  const auto& L = *layers_;
  require_input(sinusoids.rank() == 2 && sinusoids.dim(0) >= 1 && sinusoids.dim(1) == config_.block_out_channels[0],
                "timestep sinusoids " + shape_to_string(sinusoids.shape()) + " are not [N, " +
                    std::to_string(config_.block_out_channels[0]) + "]");
  const std::int64_t n = sinusoids.dim(0);
  // Every consumer of the time embedding (each resnet's time_emb_proj) takes SiLU(temb), so
  // linear_2 applies it once here.
  const auto& te = L.time_embedding;
  const auto temb_silu =
      te.linear_2.forward(b, te.linear_1.forward(b, sinusoids, Activation::silu), Activation::silu);  // [N, C0] -> [N, 4 C0]
  auto table = b.allocate(b.activation_dtype(), {n * L.time_channels});
  const auto parts = time_parts(table);
  std::vector<Backend::TensorCopy> copies;
  copies.reserve(parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i)
    copies.push_back({L.time_order[i]->time_emb_proj.forward(b, temb_silu), parts[i]});  // [N, T] -> [N, out]
  b.copy_into(copies);
  return table;
}

DeviceTensor UNet::time_projections(std::span<const float> timesteps, std::int64_t n) {
  auto& L = *layers_;
  std::vector<float> key(timesteps.begin(), timesteps.end());
  if (key.size() == 1) key.assign(static_cast<std::size_t>(n), timesteps[0]);
  {
    const std::lock_guard lock(L.time_mutex);
    if (const auto found = L.time_memo.find(key); found != L.time_memo.end()) return found->second;
  }
  auto table = time_projections(backend_->upload(time_sinusoids(timesteps, n)));
  const std::lock_guard lock(L.time_mutex);
  if (L.time_memo.emplace(key, table).second) {
    L.time_memo_order.push_back(std::move(key));
    if (L.time_memo_order.size() > kTimeMemoSize) {
      L.time_memo.erase(L.time_memo_order.front());
      L.time_memo_order.pop_front();
    }
  }
  return table;
}

Shape UNet::time_projections_shape(std::int64_t batch) const { return {batch * layers_->time_channels}; }

void UNet::prepare_context(const DeviceTensor& context) {
  const auto prepare = [&](const Transformer2DModel& model) {
    for (const auto& block : model.transformer_blocks) block.attn2.prepare_context(*backend_, context);
  };
  for (const auto& block : layers_->down_blocks)
    for (const auto& model : block.attentions) prepare(model);
  prepare(layers_->mid_block.attention);
  for (const auto& block : layers_->up_blocks)
    for (const auto& model : block.attentions) prepare(model);
}

std::vector<DeviceTensor> UNet::time_parts(const DeviceTensor& projections) const {
  const auto& L = *layers_;
  const std::int64_t n = L.time_channels > 0 ? projections.numel() / L.time_channels : 0;
  require_input(projections.rank() == 1 && n >= 1 && projections.numel() == n * L.time_channels,
                "time projections " + shape_to_string(projections.shape()) + " are not [N * " +
                    std::to_string(L.time_channels) + "]");
  const std::size_t element = dtype_size(projections.dtype());
  std::vector<DeviceTensor> parts;
  parts.reserve(L.time_order.size());
  for (std::size_t i = 0; i < L.time_order.size(); ++i)
    parts.push_back(projections.view(projections.offset() + static_cast<std::size_t>(n * L.time_offsets[i]) * element,
                                     projections.dtype(), {n, L.time_order[i]->time_emb_proj.weight.dim(0)}));
  return parts;
}

Tensor UNet::time_sinusoids(std::span<const float> timesteps, std::int64_t n) const {
  const auto& c = config_;
  require_input(timesteps.size() == 1 || timesteps.size() == static_cast<std::size_t>(n),
                std::to_string(timesteps.size()) + " timesteps for a batch of " + std::to_string(n));
  const std::int64_t c0 = c.block_out_channels[0];
  std::vector<float> per_row(timesteps.begin(), timesteps.end());
  if (per_row.size() == 1) per_row.assign(static_cast<std::size_t>(n), timesteps[0]);
  return Tensor::from_f32({n, c0}, timestep_embedding(per_row, static_cast<int>(c0), c.flip_sin_to_cos, c.freq_shift));
}

DeviceTensor UNet::forward_embedded(const DeviceTensor& sample, const DeviceTensor& sinusoids,
                                    const DeviceTensor& context, SparseStep* s) {
  return forward_projected(sample, time_projections(sinusoids), context, s);
}

DeviceTensor UNet::forward_projected(const DeviceTensor& sample, const DeviceTensor& projections,
                                     const DeviceTensor& context, SparseStep* s) {
  Backend& b = *backend_;
  const auto& c = config_;
  const auto& L = *layers_;
  require_input(sample.rank() == 4 && sample.dim(0) >= 1 && sample.dim(3) == c.in_channels,
                "sample " + shape_to_string(sample.shape()) + " is not [N, H, W, " + std::to_string(c.in_channels) + "]");
  const std::int64_t n = sample.dim(0);
  require_input(sample.dim(1) > 0 && sample.dim(2) > 0,
                "latent size " + std::to_string(sample.dim(1)) + "x" + std::to_string(sample.dim(2)) + " is empty");
  require_input(projections.numel() == n * L.time_channels,
                "time projections " + shape_to_string(projections.shape()) + " are not for a batch of " + std::to_string(n));
  require_input(context.rank() == 3 && context.dim(0) == n && context.dim(2) == c.cross_attention_dim,
                "context " + shape_to_string(context.shape()) + " is not [" + std::to_string(n) + ", L, " +
                    std::to_string(c.cross_attention_dim) + "]");
  const auto temb = time_parts(projections);

  if (s) s->begin(L.record);
  const auto H = sample.dim(1), W = sample.dim(2);
  auto h = unet::planned_conv(b, s, L.conv_in, L.conv_in_key, sample, H, W);  // [N, H, W, in] -> [N, H, W, C0]
  std::vector<DeviceTensor> skips{h};
  for (const auto& block : L.down_blocks) h = block.forward(b, h, temb, context, skips, s);  // -> [N, H/m, W/m, Clast]
  h = L.mid_block.forward(b, h, temb, context, s);
  for (const auto& block : L.up_blocks) h = block.forward(b, h, temb, context, skips, s);  // -> [N, H, W, C0]
  h = unet::planned_conv(b, s, L.conv_out, L.conv_out_key,
                         unet::group_norm(b, L.conv_norm_out, L.conv_norm_out_key, h, true, s), H, W);  // -> [N, H, W, out]
  if (s) s->finish();
  return h;
}

Tensor UNet::forward(const Tensor& sample, std::span<const float> timesteps, const Tensor& context) {
  Backend& b = *backend_;
  require_input(sample.rank() == 4, "sample " + shape_to_string(sample.shape()) + " is not [N, C, H, W]");
  const auto out = forward(b.nchw_to_nhwc(b.upload(sample)), timesteps, b.upload(context));
  return b.download(b.nhwc_to_nchw(out));  // [N, H, W, out] -> [N, out, H, W]
}

}  // namespace fisedit
