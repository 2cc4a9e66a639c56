// Element-wise ops and data movement: activations, GEGLU, broadcast add/mul, scale, upsampling,
// channel concat/slice, embedding lookup and layout conversion.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace fisedit {
namespace {

// Rows of a flat tensor for element-wise loops: long enough to vectorise, many enough to split.
constexpr std::int64_t kRow = 4096;

template <class F>
void for_each_block(cpu::ThreadPool& pool, std::int64_t n, F&& f) {
  cpu::parallel_for(pool, (n + kRow - 1) / kRow, kRow, [&](std::int64_t r) { f(r * kRow, std::min(n, (r + 1) * kRow)); });
}

void copy_floats(float* dst, const float* src, std::int64_t n) {
  std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(float));
}

}  // namespace

void CpuBackend::activation_impl(const DeviceTensor& x, Activation act, DeviceTensor& out) {
  const float* src = x.data_as<const float>();
  float* dst = out.data_as<float>();
  for_each_block(pool_, x.numel(), [&](std::int64_t begin, std::int64_t end) {
    copy_floats(dst + begin, src + begin, end - begin);
    cpu::apply_activation(dst + begin, end - begin, act);
  });
}

void CpuBackend::geglu_impl(const DeviceTensor& x, DeviceTensor& out) {
  const std::int64_t f = out.dim(-1), rows = out.numel() / std::max<std::int64_t>(f, 1);
  cpu::parallel_for(pool_, rows, f, [&](std::int64_t r) {
    const float* hidden = x.data_as<const float>() + r * 2 * f;
    const float* gate = hidden + f;
    float* y = out.data_as<float>() + r * f;
    for (std::int64_t j = 0; j < f; ++j) y[j] = hidden[j] * cpu::gelu(gate[j]);
  });
}

void CpuBackend::binary_impl(BinaryOp op, const DeviceTensor& a, const DeviceTensor& b, Broadcast shape,
                             DeviceTensor& out) {
  const std::int64_t inner = shape.inner;
  cpu::parallel_for(pool_, shape.outer * shape.repeat, inner, [&](std::int64_t row) {
    const float* x = a.data_as<const float>() + row * inner;
    const float* y = b.data_as<const float>() + row / shape.repeat * inner;
    float* z = out.data_as<float>() + row * inner;
    if (op == BinaryOp::add)
      for (std::int64_t j = 0; j < inner; ++j) z[j] = x[j] + y[j];
    else
      for (std::int64_t j = 0; j < inner; ++j) z[j] = x[j] * y[j];
  });
}

void CpuBackend::scale_impl(const DeviceTensor& x, float s, DeviceTensor& out) {
  const float* src = x.data_as<const float>();
  float* dst = out.data_as<float>();
  for_each_block(pool_, x.numel(), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) dst[i] = src[i] * s;
  });
}

void CpuBackend::upsample_nearest_impl(const DeviceTensor& x, DeviceTensor& out) {
  const std::int64_t n = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  const std::int64_t oh = out.dim(1), ow = out.dim(2);
  // One output row per item: each output pixel copies its source pixel's channels.
  cpu::parallel_for(pool_, n * oh, ow * c, [&](std::int64_t row) {
    const std::int64_t b = row / oh, y = row % oh;
    const float* src = x.data_as<const float>() + (b * h + nearest_source_index(y, h, oh)) * w * c;
    float* dst = out.data_as<float>() + row * ow * c;
    for (std::int64_t i = 0; i < ow; ++i) copy_floats(dst + i * c, src + nearest_source_index(i, w, ow) * c, c);
  });
}

void CpuBackend::copy_impl(const DeviceTensor& src, DeviceTensor& dst) {
  std::memcpy(dst.data(), src.data(), src.nbytes());
}

void CpuBackend::poison_impl(DeviceTensor& x) { std::memset(x.data(), 0xff, x.nbytes()); }

void CpuBackend::gather_positions_impl(const DeviceTensor& x, const DeviceTensor& positions, DeviceTensor& out) {
  const std::int64_t l = x.dim(1), p = positions.dim(0), c = x.dim(2);
  const auto* index = positions.data_as<const std::int32_t>();
  cpu::parallel_for(pool_, x.dim(0) * p, c, [&](std::int64_t row) {
    const std::int64_t b = row / p;
    copy_floats(out.data_as<float>() + row * c, x.data_as<const float>() + (b * l + index[row % p]) * c, c);
  });
}

void CpuBackend::scatter_positions_impl(const DeviceTensor& values, const DeviceTensor& positions, DeviceTensor& out) {
  const std::int64_t l = out.dim(1), p = positions.dim(0), c = out.dim(2);
  const auto* index = positions.data_as<const std::int32_t>();
  cpu::parallel_for(pool_, values.dim(0) * p, c, [&](std::int64_t row) {
    const std::int64_t b = row / p;
    copy_floats(out.data_as<float>() + (b * l + index[row % p]) * c, values.data_as<const float>() + row * c, c);
  });
}

void CpuBackend::select_positions_impl(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b,
                                       DeviceTensor& out) {
  const std::int64_t positions = mask.numel(), c = a.dim(-1), rows = a.dim(0) * positions;
  const float* m = mask.data_as<const float>();
  cpu::parallel_for(pool_, rows, c, [&](std::int64_t row) {
    const float* src = (m[row % positions] != 0.0f ? a : b).data_as<const float>() + row * c;
    copy_floats(out.data_as<float>() + row * c, src, c);
  });
}

void CpuBackend::sampler_step_impl(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule,
                                   const DeviceTensor& x, DeviceTensor* history, const DeviceTensor* noise,
                                   const DeviceTensor* mask, const DeviceTensor* keep, DeviceTensor& flags,
                                   DeviceTensor& out) {
  const std::int64_t n = x.numel(), pixels = x.dim(1) * x.dim(2);
  const bool guided = prediction.dim(0) == 2;
  const float* p = prediction.data_as<const float>();
  const float* xs = x.data_as<const float>();
  float* h = history ? history->data_as<float>() : nullptr;
  const float* z = noise ? noise->data_as<const float>() : nullptr;
  const float* m = mask ? mask->data_as<const float>() : nullptr;
  const float* kept = keep ? keep->data_as<const float>() : nullptr;
  float* o = out.data_as<float>();
  std::int32_t bits = 0;
  for (std::int64_t k = 0; k < n; ++k) {  // ~37k values at 768: one thread
    const float model = guided ? guide(p[k], p[n + k], cfg_scale) : p[k];
    float x0 = 0.0f;
    float v = apply_sampler_rule(rule, model, xs[k], rule.history ? h[k] : 0.0f, z ? z[k] : 0.0f, x0);
    if (!std::isfinite(model)) bits |= 1;
    if (!std::isfinite(v)) bits |= 2;
    if (h) h[k] = x0;
    if (m && m[k % pixels] == 0.0f) v = kept[k];
    o[k] = v;
  }
  flags.data_as<std::int32_t>()[0] |= bits;
}

void CpuBackend::sampler_input_impl(const DeviceTensor& x, float divisor, DeviceTensor& out) {
  const std::int64_t n = x.numel();
  const float* xs = x.data_as<const float>();
  float* o = out.data_as<float>();
  for (std::int64_t k = 0; k < n; ++k) o[k] = xs[k] / divisor;
  for (std::int64_t b = 1; b < out.dim(0); ++b) std::copy_n(o, n, o + b * n);
}

void CpuBackend::concat_channels_impl(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) {
  const std::int64_t ca = a.dim(-1), cb = b.dim(-1), rows = out.numel() / std::max<std::int64_t>(ca + cb, 1);
  cpu::parallel_for(pool_, rows, ca + cb, [&](std::int64_t r) {
    float* dst = out.data_as<float>() + r * (ca + cb);
    copy_floats(dst, a.data_as<const float>() + r * ca, ca);
    copy_floats(dst + ca, b.data_as<const float>() + r * cb, cb);
  });
}

void CpuBackend::slice_channels_impl(const DeviceTensor& x, std::int64_t begin, DeviceTensor& out) {
  const std::int64_t c = x.dim(-1), width = out.dim(-1), rows = out.numel() / std::max<std::int64_t>(width, 1);
  cpu::parallel_for(pool_, rows, width, [&](std::int64_t r) {
    copy_floats(out.data_as<float>() + r * width, x.data_as<const float>() + r * c + begin, width);
  });
}

void CpuBackend::embedding_impl(const DeviceTensor& table, const DeviceTensor& ids, DeviceTensor& out) {
  const std::int64_t vocab = table.dim(0), c = table.dim(1), n = ids.numel();
  const auto* id = ids.data_as<const std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i)
    if (id[i] < 0 || id[i] >= vocab)
      throw Error(ErrorCode::invalid_argument, "embedding: id " + std::to_string(id[i]) + " at position " +
                                                   std::to_string(i) + " is outside the table of " +
                                                   std::to_string(vocab) + " entries");
  cpu::parallel_for(pool_, n, c, [&](std::int64_t i) {
    copy_floats(out.data_as<float>() + i * c, table.data_as<const float>() + id[i] * c, c);
  });
}

void CpuBackend::convert_layout_impl(const DeviceTensor& x, bool to_nhwc, DeviceTensor& out) {
  // Both directions are a [C, P] <-> [P, C] transpose per batch item (P = H * W positions).
  const std::int64_t n = x.dim(0), c = to_nhwc ? x.dim(1) : x.dim(3), p = x.numel() / std::max<std::int64_t>(n * c, 1);
  const std::int64_t rows = to_nhwc ? p : c, cols = to_nhwc ? c : p;  // of the output, per item
  cpu::parallel_for(pool_, n * rows, cols, [&](std::int64_t item_row) {
    const std::int64_t b = item_row / rows, r = item_row % rows;
    const float* src = x.data_as<const float>() + b * p * c;
    float* dst = out.data_as<float>() + b * p * c + r * cols;
    for (std::int64_t j = 0; j < cols; ++j) dst[j] = src[j * rows + r];
  });
}

}  // namespace fisedit
