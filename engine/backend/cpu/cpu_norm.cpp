// GroupNorm (+SiLU, with statistics in or out) and LayerNorm over channels-last rows. Sums are
// accumulated in double, so one pass over the data gives mean and variance without cancellation.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"

#include <algorithm>
#include <vector>

namespace fisedit {
namespace {

// Positions per block of the statistics pass: enough to amortise a block's partial sums.
constexpr std::int64_t kPositionsPerBlock = 256;

// Per-channel sum and sum of squares of x [L, C], in parallel blocks of positions.
void channel_moments(cpu::ThreadPool& pool, const float* x, std::int64_t l, std::int64_t c, std::vector<double>& sum,
                     std::vector<double>& sq) {
  const std::int64_t blocks = std::max<std::int64_t>(1, (l + kPositionsPerBlock - 1) / kPositionsPerBlock);
  std::vector<double> partial(static_cast<std::size_t>(blocks * 2 * c), 0.0);
  cpu::parallel_for(pool, blocks, kPositionsPerBlock * c, [&](std::int64_t b) {
    double* s = partial.data() + b * 2 * c;
    double* q = s + c;
    const std::int64_t end = std::min(l, (b + 1) * kPositionsPerBlock);
    for (std::int64_t i = b * kPositionsPerBlock; i < end; ++i) {
      const float* row = x + i * c;
      for (std::int64_t j = 0; j < c; ++j) {
        const double v = row[j];
        s[j] += v;
        q[j] += v * v;
      }
    }
  });
  sum.assign(static_cast<std::size_t>(c), 0.0);
  sq.assign(static_cast<std::size_t>(c), 0.0);
  for (std::int64_t b = 0; b < blocks; ++b)
    for (std::int64_t j = 0; j < c; ++j) {
      sum[static_cast<std::size_t>(j)] += partial[static_cast<std::size_t>(b * 2 * c + j)];
      sq[static_cast<std::size_t>(j)] += partial[static_cast<std::size_t>(b * 2 * c + c + j)];
    }
}

}  // namespace

void cpu::group_norm_affine(const float* gamma, const float* beta, std::int64_t channels, int groups, float eps,
                            const float* mean, const float* var, float* scale, float* shift) {
  const std::int64_t per_group = channels / groups;
  for (std::int64_t gi = 0; gi < groups; ++gi) {
    const float rstd = 1.0f / std::sqrt(var[gi] + eps);
    for (std::int64_t j = gi * per_group; j < (gi + 1) * per_group; ++j) {
      scale[j] = rstd * gamma[j];
      shift[j] = beta[j] - mean[gi] * rstd * gamma[j];
    }
  }
}

void CpuBackend::group_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                                 int groups, float eps, bool silu, GroupNormStats* stats_out,
                                 const GroupNormStats* stats_in, DeviceTensor& out) {
  const std::int64_t n = x.dim(0), l = x.dim(1), c = x.dim(2), per_group = c / groups;
  std::vector<double> sum, sq;
  std::vector<float> mean(static_cast<std::size_t>(groups)), var(static_cast<std::size_t>(groups));
  std::vector<float> scale(static_cast<std::size_t>(c)), shift(static_cast<std::size_t>(c));
  for (std::int64_t b = 0; b < n; ++b) {
    const float* src = x.data_as<const float>() + b * l * c;
    float* dst = out.data_as<float>() + b * l * c;
    if (stats_in) {
      std::copy_n(stats_in->mean.data_as<const float>() + b * groups, groups, mean.begin());
      std::copy_n(stats_in->var.data_as<const float>() + b * groups, groups, var.begin());
    } else {
      channel_moments(pool_, src, l, c, sum, sq);
      for (std::int64_t gi = 0; gi < groups; ++gi) {
        double s = 0, q = 0;
        for (std::int64_t j = gi * per_group; j < (gi + 1) * per_group; ++j) {
          s += sum[static_cast<std::size_t>(j)];
          q += sq[static_cast<std::size_t>(j)];
        }
        const double count = static_cast<double>(l * per_group), m = s / count;
        mean[static_cast<std::size_t>(gi)] = static_cast<float>(m);
        var[static_cast<std::size_t>(gi)] = static_cast<float>(std::max(0.0, q / count - m * m));
      }
    }
    if (stats_out) {
      std::copy(mean.begin(), mean.end(), stats_out->mean.data_as<float>() + b * groups);
      std::copy(var.begin(), var.end(), stats_out->var.data_as<float>() + b * groups);
    }
    cpu::group_norm_affine(gamma.data_as<const float>(), beta.data_as<const float>(), c, groups, eps, mean.data(),
                           var.data(), scale.data(), shift.data());
    const float* a = scale.data();
    const float* s = shift.data();
    cpu::parallel_for(pool_, l, c, [&](std::int64_t i) {
      const float* row = src + i * c;
      float* y = dst + i * c;
      for (std::int64_t j = 0; j < c; ++j) y[j] = row[j] * a[j] + s[j];
      if (silu) cpu::apply_activation(y, c, Activation::silu);
    });
  }
}

void CpuBackend::layer_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                                 float eps, DeviceTensor& out) {
  const std::int64_t c = x.dim(-1), rows = x.numel() / std::max<std::int64_t>(c, 1);
  const float* g = gamma.data_as<const float>();
  const float* bt = beta.data_as<const float>();
  cpu::parallel_for(pool_, rows, c, [&](std::int64_t r) {
    const float* row = x.data_as<const float>() + r * c;
    float* y = out.data_as<float>() + r * c;
    double s = 0, q = 0;
    for (std::int64_t j = 0; j < c; ++j) {
      s += row[j];
      q += static_cast<double>(row[j]) * row[j];
    }
    const double m = s / static_cast<double>(c);
    const float mean = static_cast<float>(m);
    const float rstd = 1.0f / std::sqrt(static_cast<float>(std::max(0.0, q / static_cast<double>(c) - m * m)) + eps);
    for (std::int64_t j = 0; j < c; ++j) y[j] = (row[j] - mean) * rstd * g[j] + bt[j];
  });
}

}  // namespace fisedit
