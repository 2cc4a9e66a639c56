// The CUDA backend's ops for sparse editing.
#include "backend/cuda/cuda_state.h"
#include "sampler.cuh"
#include "select_positions.cuh"
#include "sparse_gather.cuh"

#include <algorithm>
#include <vector>

namespace fisedit {

void CudaBackend::select_positions_impl(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b,
                                        DeviceTensor& out) {
  const std::int64_t positions = mask.numel(), channels = a.dim(-1);
  kernels::SelectPositionsParams p{mask.data_as<const __half>(), a.data_as<const __half>(), b.data_as<const __half>(),
                                   out.data_as<__half>(), a.numel() / (positions * channels), positions, channels};
  FISEDIT_CUDA_CHECK(kernels::select_positions(p, s_->stream.get()));
}

void CudaBackend::sampler_step_impl(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule,
                                    const DeviceTensor& x, DeviceTensor* history, const DeviceTensor* noise,
                                    const DeviceTensor* mask, const DeviceTensor* keep, DeviceTensor& flags,
                                    DeviceTensor& out) {
  kernels::SamplerStepParams p;
  p.prediction = prediction.data_as<const __half>();
  p.batch = static_cast<int>(prediction.dim(0));
  p.cfg_scale = cfg_scale;
  p.rule = rule;
  p.x = x.data_as<const float>();
  p.history = history ? history->data_as<float>() : nullptr;
  p.noise = noise ? noise->data_as<const float>() : nullptr;
  p.mask = mask ? mask->data_as<const float>() : nullptr;
  p.keep = keep ? keep->data_as<const float>() : nullptr;
  p.flags = flags.data_as<std::int32_t>();
  p.out = out.data_as<float>();
  p.n = x.numel();
  p.pixels = x.dim(1) * x.dim(2);
  FISEDIT_CUDA_CHECK(kernels::sampler_step(p, s_->stream.get()));
}

void CudaBackend::sampler_input_impl(const DeviceTensor& x, float divisor, DeviceTensor& out) {
  FISEDIT_CUDA_CHECK(kernels::sampler_input(x.data_as<const float>(), divisor, out.data_as<__half>(), x.numel(),
                                            static_cast<int>(out.dim(0)), s_->stream.get()));
}

}  // namespace fisedit

namespace fisedit {

void CudaBackend::poison_impl(DeviceTensor& x) {
  FISEDIT_CUDA_CHECK(cudaMemsetAsync(x.data(), 0xff, x.nbytes(), s_->stream.get()));
}

void CudaBackend::copy_impl(const DeviceTensor& src, DeviceTensor& dst) {
  FISEDIT_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(), cudaMemcpyDeviceToDevice, s_->stream.get()));
}

void CudaBackend::gather_positions_impl(const DeviceTensor& x, const DeviceTensor& positions, DeviceTensor& out) {
  kernels::RowsParams p{x.data_as<const __half>(), out.data_as<__half>(), positions.data_as<const std::int32_t>(),
                        x.dim(0), x.dim(1), positions.dim(0), x.dim(2)};
  FISEDIT_CUDA_CHECK(kernels::gather_rows(p, s_->stream.get()));
}

namespace {

std::vector<kernels::RowsParams> rows_spans(std::span<const Backend::RowsAt> moves) {
  std::vector<kernels::RowsParams> spans;
  spans.reserve(moves.size());
  for (const auto& m : moves)
    spans.push_back({m.src.data_as<const __half>(), m.dst.data_as<__half>(), m.positions.data_as<const std::int32_t>(),
                     m.src.dim(0), m.src.dim(1), m.positions.dim(0), m.src.dim(2)});
  return spans;
}

}  // namespace

void CudaBackend::gather_rows_into_impl(std::span<const RowsAt> gathers) {
  const auto spans = rows_spans(gathers);
  FISEDIT_CUDA_CHECK(kernels::batched_gather_rows(spans.data(), spans.size(), s_->stream.get()));
}

void CudaBackend::copy_rows_into_impl(std::span<const RowsAt> copies) {
  const auto spans = rows_spans(copies);
  FISEDIT_CUDA_CHECK(kernels::batched_copy_rows(spans.data(), spans.size(), s_->stream.get()));
}

void CudaBackend::scatter_rows_into_impl(std::span<const RowsAt> scatters) {
  auto spans = rows_spans(scatters);
  for (std::size_t i = 0; i < spans.size(); ++i) spans[i].length = scatters[i].dst.dim(1);  // rows_spans: the source's
  FISEDIT_CUDA_CHECK(kernels::batched_scatter_rows(spans.data(), spans.size(), s_->stream.get()));
}

void CudaBackend::scatter_positions_impl(const DeviceTensor& values, const DeviceTensor& positions, DeviceTensor& out) {
  kernels::RowsParams p{values.data_as<const __half>(), out.data_as<__half>(), positions.data_as<const std::int32_t>(),
                        out.dim(0), out.dim(1), positions.dim(0), out.dim(2)};
  FISEDIT_CUDA_CHECK(kernels::scatter_rows(p, s_->stream.get()));
}

// One pass: each output row is the base's or, when its position is active, the values' row.
void CudaBackend::scatter_positions_copy_impl(const DeviceTensor& base, const DeviceTensor& values,
                                              const DeviceTensor& positions, const DeviceTensor* addend,
                                              const DeviceTensor* inverse, DeviceTensor& out) {
  kernels::MergeRowsParams p{base.data_as<const __half>(), values.data_as<const __half>(), out.data_as<__half>(),
                             positions.data_as<const std::int32_t>(), out.dim(0), out.dim(1), positions.dim(0),
                             out.dim(2)};
  if (inverse) p.inverse = inverse->data_as<const std::int32_t>();
  if (addend) {
    p.addend = addend->data_as<const __half>();
    p.addend_per_image = addend->dim(1) != values.dim(1);
  }
  const cudaError_t status = kernels::merge_rows(p, s_->stream.get());
  if (status == cudaErrorNotSupported) {  // odd channels or alignment (nothing was launched): add, copy, scatter
    Backend::scatter_positions_copy_impl(base, values, positions, addend, inverse, out);
    return;
  }
  FISEDIT_CUDA_CHECK(status);
}

// The merge kernel with base and destination the same: it visits the active rows only.
void CudaBackend::scatter_positions_into_impl(const DeviceTensor& base, const DeviceTensor& values,
                                              const DeviceTensor& positions, const DeviceTensor* addend) {
  kernels::MergeRowsParams p{base.data_as<const __half>(), values.data_as<const __half>(), base.data_as<__half>(),
                             positions.data_as<const std::int32_t>(), base.dim(0), base.dim(1), positions.dim(0),
                             base.dim(2)};
  if (addend) {
    p.addend = addend->data_as<const __half>();
    p.addend_per_image = addend->dim(1) != values.dim(1);
  }
  const cudaError_t status = kernels::merge_rows(p, s_->stream.get());
  if (status == cudaErrorNotSupported) {  // odd channels or alignment (nothing was launched)
    Backend::scatter_positions_into_impl(base, values, positions, addend);
    return;
  }
  FISEDIT_CUDA_CHECK(status);
}

void CudaBackend::conv2d_at_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                                 std::int64_t out_h, std::int64_t out_w, const DeviceTensor& positions,
                                 const InputNorm* norm, const DeviceTensor* appended, const DeviceTensor* residual,
                                 DeviceTensor& out) {
  (void)out_h;  // positions are checked against the output size by the caller
  conv_by_gemm(x, w, params, out_w, &positions, positions.dim(0), out, norm, appended, residual);
}

// im2col patches, in chunks of rows, each one GEMM against the prepared [Cout8, kh, kw, Cin8] weights
// (the layout cuDNN uses here, read as a [Cout8, kh * kw * Cin8] matrix). out [N, count, Cout] rows.
// With `norm`, the patches are of the normalised input (kernels::Im2colNorm); with `appended`, of x's
// channels followed by its; with `residual` (out's shape), plus it: the GEMM's C matrix.
void CudaBackend::conv_by_gemm(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                               std::int64_t out_w, const DeviceTensor* positions, std::int64_t count, DeviceTensor& out,
                               const InputNorm* norm, const DeviceTensor* appended, const DeviceTensor* residual) {
  const std::int64_t n = x.dim(0), rows = n * count, cout = w.out_channels;
  const std::int64_t cout8 = w.weight.dim(0), cin8 = w.weight.dim(3), k = std::int64_t{w.kernel_h} * w.kernel_w * cin8;
  if (rows == 0) return;
  constexpr std::int64_t kColumnBytes = std::int64_t{128} << 20;
  const std::int64_t chunk = std::max<std::int64_t>(1, std::min(rows, kColumnBytes / (2 * k)));
  const auto out_rows = out.reshaped({rows, cout});
  const auto weight = w.weight.reshaped({cout8, k});
  kernels::Im2colNorm gather_norm;
  if (norm)
    gather_norm = {norm->gamma->data_as<const __half>(), norm->beta->data_as<const __half>(),
                   norm->stats->mean.data_as<const float>(), norm->stats->var.data_as<const float>(), norm->groups,
                   norm->eps, norm->silu};
  for (std::int64_t first = 0; first < rows; first += chunk) {
    const std::int64_t m = std::min(chunk, rows - first);
    auto columns = allocate(DType::f16, {m, k});
    kernels::Im2colParams p{x.data_as<const __half>(), columns.data_as<__half>(),
                            positions ? positions->data_as<const std::int32_t>() : nullptr,
                            n, x.dim(1), x.dim(2), x.dim(3) + (appended ? appended->dim(3) : 0), cin8, count, out_w,
                            w.kernel_h, w.kernel_w, params.stride, params.pad_top, params.pad_left, first, m, gather_norm};
    if (appended) {
      p.appended = appended->data_as<const __half>();
      p.cin_appended = appended->dim(3);
    }
    FISEDIT_CUDA_CHECK(kernels::im2col_positions(p, s_->stream.get()));
    auto destination = out_rows.slice_rows(first, first + m);
    const DeviceTensor residual_rows =
        residual ? residual->reshaped({rows, cout}).slice_rows(first, first + m) : DeviceTensor();
    if (cout8 == cout) {  // straight into the output, bias (and the residual) in the GEMM's epilogue
      if (residual)
        linear_add_impl(columns, weight, w.bias, residual_rows, destination);
      else
        linear_impl(columns, weight, w.bias, Activation::none, destination);
      continue;
    }
    auto y = linear(columns, weight, DeviceTensor());  // [m, Cout8]: padded output channels to drop
    y = slice_channels(y, 0, cout);
    if (!w.bias.empty()) y = add(y, w.bias);
    if (residual) y = add(y, residual_rows);
    copy_impl(y, destination);
  }
}

}  // namespace fisedit
