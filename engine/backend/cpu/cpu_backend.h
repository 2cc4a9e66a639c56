#pragma once
// The float32 CPU backend: the reference every other backend is tested against, and the engine of
// machines without a GPU. GEMMs (linear, convolution via im2col, attention) go through OpenBLAS;
// all ops, GEMMs included, are split over the backend's own thread pool (see thread_pool.h).
// Convolution weights are stored [Cout, kh * kw * Cin], so a convolution is one GEMM against
// im2col rows, and a 1x1 convolution one GEMM against the input itself.
#include "backend/backend.h"
#include "backend/cpu/thread_pool.h"

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>

namespace fisedit {

class CpuBackend final : public Backend {
public:
  // `threads` counts the calling thread; 0 means one per available CPU.
  explicit CpuBackend(int threads = 0);

  DeviceKind kind() const override { return DeviceKind::cpu; }
  std::string name() const override;
  DType activation_dtype() const override { return DType::f32; }
  DeviceTensor allocate(DType dtype, Shape shape) override;
  DeviceTensor allocate_host(DType dtype, Shape shape) override;
  using Backend::allocate;

  // A cap on the bytes that allocate()'s live buffers may hold together, as a GPU's memory caps them:
  // beyond it allocate() throws Error(out_of_memory) with what a GPU out of memory says, so running out
  // of device memory in the middle of a generation or edit can be tested on any machine. None (the
  // default) is unlimited; the environment variable FISEDIT_DEVICE_MEMORY_LIMIT (bytes) sets it for
  // backends made after it is set. Host-resident buffers (allocate_host) are not counted.
  void set_memory_limit(std::optional<std::size_t> bytes) { limit_ = bytes ? *bytes : kNoLimit; }
  std::optional<std::size_t> memory_limit() const;
  std::size_t memory_in_use() const { return accounting_->in_use.load(); }
  // The most memory_in_use() since the backend was made or reset_memory_peak().
  std::size_t memory_peak() const { return peak_.load(); }
  void reset_memory_peak() { peak_ = memory_in_use(); }

  struct Accounting {
    std::atomic<std::size_t> in_use{0};
  };

protected:
  void upload_impl(const Tensor& host, DeviceTensor& out) override;
  void download_impl(const DeviceTensor& t, std::span<float> out) override;
  ConvWeight prepare_conv_weight_impl(const Tensor& weight, const Tensor& bias) override;
  void linear_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias, Activation act,
                   DeviceTensor& out) override;
  void conv2d_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params, DeviceTensor& out) override;
  void group_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta, int groups,
                       float eps, bool silu, GroupNormStats* stats_out, const GroupNormStats* stats_in,
                       DeviceTensor& out) override;
  void layer_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta, float eps,
                       DeviceTensor& out) override;
  void attention_impl(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                      const AttentionParams& params, DeviceTensor& out) override;
  void attention_probs_impl(const DeviceTensor& q, const DeviceTensor& k, const AttentionParams& params,
                            DeviceTensor& out) override;
  void attention_apply_impl(const DeviceTensor& probs, const DeviceTensor& v, DeviceTensor& out) override;
  void replace_attention_columns_impl(const DeviceTensor& source, const DeviceTensor& columns, std::int64_t first,
                                      DeviceTensor& out) override;
  void activation_impl(const DeviceTensor& x, Activation act, DeviceTensor& out) override;
  void geglu_impl(const DeviceTensor& x, DeviceTensor& out) override;
  void binary_impl(BinaryOp op, const DeviceTensor& a, const DeviceTensor& b, Broadcast shape,
                   DeviceTensor& out) override;
  void scale_impl(const DeviceTensor& x, float s, DeviceTensor& out) override;
  void upsample_nearest_impl(const DeviceTensor& x, DeviceTensor& out) override;
  void concat_channels_impl(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) override;
  void slice_channels_impl(const DeviceTensor& x, std::int64_t begin, DeviceTensor& out) override;
  void embedding_impl(const DeviceTensor& table, const DeviceTensor& ids, DeviceTensor& out) override;
  void copy_impl(const DeviceTensor& src, DeviceTensor& dst) override;
  void poison_impl(DeviceTensor& x) override;
  void conv2d_at_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params, std::int64_t out_h,
                      std::int64_t out_w, const DeviceTensor& positions, const InputNorm* norm,
                      const DeviceTensor* appended, const DeviceTensor* residual, DeviceTensor& out) override;
  void gather_positions_impl(const DeviceTensor& x, const DeviceTensor& positions, DeviceTensor& out) override;
  void scatter_positions_impl(const DeviceTensor& values, const DeviceTensor& positions, DeviceTensor& out) override;
  void sampler_step_impl(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule, const DeviceTensor& x,
                         DeviceTensor* history, const DeviceTensor* noise, const DeviceTensor* mask,
                         const DeviceTensor* keep, DeviceTensor& flags, DeviceTensor& out) override;
  void sampler_input_impl(const DeviceTensor& x, float divisor, DeviceTensor& out) override;
  void select_positions_impl(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b,
                             DeviceTensor& out) override;
  void convert_layout_impl(const DeviceTensor& x, bool to_nhwc, DeviceTensor& out) override;

private:
  void im2col_gemm(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p, std::int64_t out_w,
                   const std::int32_t* positions, std::int64_t per_image, const InputNorm* norm, float* y);

  cpu::ThreadPool pool_;
  static constexpr std::size_t kNoLimit = ~std::size_t{0};
  std::atomic<std::size_t> limit_{kNoLimit};
  std::atomic<std::size_t> peak_{0};
  // Shared with the buffers, which give their bytes back when freed.
  std::shared_ptr<Accounting> accounting_ = std::make_shared<Accounting>();
};

std::unique_ptr<Backend> make_cpu_backend();

}  // namespace fisedit
