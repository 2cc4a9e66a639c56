// Linear layers and convolutions: OpenBLAS GEMMs split over the pool (a convolution over im2col rows,
// in blocks so the column buffers stay small at any image size), then a bias-and-activation pass.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace fisedit {
namespace cpu {

void gemm_nt(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
             const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blas_int(m), blas_int(n), blas_int(k), alpha, a,
              blas_int(lda), b, blas_int(ldb), beta, c, blas_int(ldc));
}

void gemm_nn(std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a, std::int64_t lda,
             const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blas_int(m), blas_int(n), blas_int(k), alpha, a,
              blas_int(lda), b, blas_int(ldb), beta, c, blas_int(ldc));
}

void parallel_gemm_nt(ThreadPool& pool, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
                      std::int64_t lda, const float* b, std::int64_t ldb, float* c, std::int64_t ldc) {
  // Below ~1M multiply-adds, or when neither side splits into useful blocks, one thread does it.
  const std::int64_t threads = pool.size();
  if (threads == 1 || m * n * k < (std::int64_t{1} << 20) || (m < 32 * threads && n < 32 * threads)) {
    gemm_nt(m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
    return;
  }
  const bool by_rows = m >= 32 * threads;
  const std::int64_t extent = by_rows ? m : n;
  pool.run(threads, [&](std::int64_t t, int) {
    const std::int64_t begin = extent * t / threads, count = extent * (t + 1) / threads - begin;
    if (by_rows)
      gemm_nt(count, n, k, 1.0f, a + begin * lda, lda, b, ldb, 0.0f, c + begin * ldc, ldc);
    else
      gemm_nt(m, count, k, 1.0f, a, lda, b + begin * ldb, ldb, 0.0f, c + begin, ldc);
  });
}

}  // namespace cpu

namespace {

// out[rows, n] += bias (if any), then the activation.
void bias_activation_rows(float* out, std::int64_t rows, std::int64_t n, const float* bias, Activation act) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = out + r * n;
    if (bias)
      for (std::int64_t j = 0; j < n; ++j) row[j] += bias[j];
    cpu::apply_activation(row, n, act);
  }
}

void bias_activation(cpu::ThreadPool& pool, float* out, std::int64_t rows, std::int64_t n, const float* bias,
                     Activation act) {
  if (!bias && act == Activation::none) return;
  cpu::parallel_for(pool, rows, n, [&](std::int64_t r) { bias_activation_rows(out + r * n, 1, n, bias, act); });
}

// The column buffers of all threads together: at most this many floats (16 MiB).
constexpr std::int64_t kColumnBudget = std::int64_t{1} << 22;

}  // namespace

ConvWeight CpuBackend::prepare_conv_weight_impl(const Tensor& weight, const Tensor& bias) {
  const auto cout = weight.dim(0), cin = weight.dim(1), kh = weight.dim(2), kw = weight.dim(3);
  const auto src = weight.to_f32();
  ConvWeight w;
  w.out_channels = static_cast<int>(cout);
  w.in_channels = static_cast<int>(cin);
  w.kernel_h = static_cast<int>(kh);
  w.kernel_w = static_cast<int>(kw);
  // [Cout, Cin, kh, kw] -> [Cout, kh, kw, Cin]: the order of an im2col row of channels-last input.
  w.weight = allocate(DType::f32, {cout, kh * kw * cin});
  float* dst = w.weight.data_as<float>();
  for (std::int64_t o = 0; o < cout; ++o)
    for (std::int64_t c = 0; c < cin; ++c)
      for (std::int64_t y = 0; y < kh; ++y)
        for (std::int64_t x = 0; x < kw; ++x)
          dst[((o * kh + y) * kw + x) * cin + c] = src[static_cast<std::size_t>(((o * cin + c) * kh + y) * kw + x)];
  if (!bias.empty()) w.bias = upload(bias);
  return w;
}

void CpuBackend::linear_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                             Activation act, DeviceTensor& out) {
  const std::int64_t k = weight.dim(1), n = weight.dim(0), m = x.numel() / std::max<std::int64_t>(k, 1);
  float* y = out.data_as<float>();
  cpu::parallel_gemm_nt(pool_, m, n, k, x.data_as<const float>(), k, weight.data_as<const float>(), k, y, n);
  bias_activation(pool_, y, m, n, bias.empty() ? nullptr : bias.data_as<const float>(), act);
}

void CpuBackend::conv2d_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p, DeviceTensor& out) {
  const std::int64_t cin = x.dim(3), ho = out.dim(1), wo = out.dim(2), cout = out.dim(3);
  const bool pointwise = w.kernel_h == 1 && w.kernel_w == 1 && p.stride == 1 && p.pad_top == 0 && p.pad_left == 0 &&
                         p.pad_bottom == 0 && p.pad_right == 0;
  if (pointwise) {
    const std::int64_t pixels = x.dim(0) * ho * wo;
    const float* bias = w.bias.empty() ? nullptr : w.bias.data_as<const float>();
    cpu::parallel_gemm_nt(pool_, pixels, cout, cin, x.data_as<const float>(), cin, w.weight.data_as<const float>(), cin,
                          out.data_as<float>(), cout);
    bias_activation(pool_, out.data_as<float>(), pixels, cout, bias, Activation::none);
    return;
  }
  im2col_gemm(x, w, p, wo, nullptr, ho * wo, nullptr, out.data_as<float>());
}

void CpuBackend::conv2d_at_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p, std::int64_t out_h,
                                std::int64_t out_w, const DeviceTensor& positions, const InputNorm* norm,
                                const DeviceTensor* appended, const DeviceTensor* residual, DeviceTensor& out) {
  (void)out_h;  // positions are already checked against the output size
  DeviceTensor input = x;
  if (appended) {  // the concatenation made: the CPU's gather reads one tensor
    input = allocate(x.dtype(), {x.dim(0), x.dim(1), x.dim(2), x.dim(3) + appended->dim(3)});
    concat_channels_impl(x, *appended, input);
  }
  im2col_gemm(input, w, p, out_w, positions.data_as<const std::int32_t>(), positions.dim(0), norm, out.data_as<float>());
  if (residual && out.numel() > 0) {
    const std::int64_t c = out.dim(2);
    binary_impl(BinaryOp::add, out, *residual, Broadcast{out.numel() / c, 1, c}, out);
  }
}

// Output pixels in blocks, each gathered into its thread's column buffer, then one GEMM and the bias
// while the block is in cache; small convolutions stay on one thread. Pixel i of image b is output
// position positions[i] (or i itself without positions) of an output out_w wide. With `norm`, the
// gathered input values go through the GroupNorm's affine map (and SiLU) as group_norm computes them;
// the padding stays zero, as it pads the normalised input.
void CpuBackend::im2col_gemm(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p, std::int64_t out_w,
                             const std::int32_t* positions, std::int64_t per_image, const InputNorm* norm, float* y) {
  const std::int64_t n = x.dim(0), h = x.dim(1), wd = x.dim(2), cin = x.dim(3);
  const std::int64_t cout = w.out_channels, kh = w.kernel_h, kw = w.kernel_w, k = kh * kw * cin;
  const float* src = x.data_as<const float>();
  const float* weight = w.weight.data_as<const float>();
  const float* bias = w.bias.empty() ? nullptr : w.bias.data_as<const float>();
  const std::int64_t pixels = n * per_image;
  if (pixels == 0) return;
  std::vector<float> scale, shift;  // [n, cin] each, with norm
  if (norm) {
    scale.resize(static_cast<std::size_t>(n * cin));
    shift.resize(scale.size());
    for (std::int64_t b = 0; b < n; ++b)
      cpu::group_norm_affine(norm->gamma->data_as<const float>(), norm->beta->data_as<const float>(), cin,
                             norm->groups, norm->eps, norm->stats->mean.data_as<const float>() + b * norm->groups,
                             norm->stats->var.data_as<const float>() + b * norm->groups, scale.data() + b * cin,
                             shift.data() + b * cin);
  }

  const std::int64_t threads = pixels * k * cout < (std::int64_t{1} << 20) ? 1 : pool_.size();
  const std::int64_t rows = std::clamp<std::int64_t>(kColumnBudget / (threads * k), 1, (pixels + threads - 1) / threads);
  std::vector<float> columns(static_cast<std::size_t>(threads * rows * k));
  const auto block_gemm = [&](std::int64_t block, int thread) {
    const std::int64_t first = block * rows, count = std::min(rows, pixels - first);
    float* dst = columns.data() + thread * rows * k;
    for (std::int64_t pixel = first; pixel < first + count; ++pixel) {
      const std::int64_t b = pixel / per_image, i = pixel % per_image;
      const std::int64_t position = positions ? positions[i] : i;
      const std::int64_t oy = position / out_w, ox = position % out_w;
      for (std::int64_t ky = 0; ky < kh; ++ky) {
        const std::int64_t iy = oy * p.stride - p.pad_top + ky;
        for (std::int64_t kx = 0; kx < kw; ++kx, dst += cin) {
          const std::int64_t ix = ox * p.stride - p.pad_left + kx;
          if (iy < 0 || iy >= h || ix < 0 || ix >= wd) {
            std::fill(dst, dst + cin, 0.0f);
            continue;
          }
          const float* row = src + ((b * h + iy) * wd + ix) * cin;
          if (!norm) {
            std::memcpy(dst, row, static_cast<std::size_t>(cin) * sizeof(float));
            continue;
          }
          const float* a = scale.data() + b * cin;
          const float* s = shift.data() + b * cin;
          for (std::int64_t c = 0; c < cin; ++c) dst[c] = row[c] * a[c] + s[c];
          if (norm->silu) cpu::apply_activation(dst, cin, Activation::silu);
        }
      }
    }
    cpu::gemm_nt(count, cout, k, 1.0f, columns.data() + thread * rows * k, k, weight, k, 0.0f, y + first * cout, cout);
    bias_activation_rows(y + first * cout, count, cout, bias, Activation::none);
  };
  const std::int64_t blocks = (pixels + rows - 1) / rows;
  if (threads == 1)
    for (std::int64_t block = 0; block < blocks; ++block) block_gemm(block, 0);
  else
    pool_.run(blocks, block_gemm);
}

}  // namespace fisedit
