#pragma once
// The CUDA backend: fp16 activations and weights with float32 accumulation, channels-last, one
// stream. cuDNN for convolutions (algorithm chosen once per shape), cuBLASLt for GEMMs, fisedit's own
// kernels (kernels/) where fusion pays: GroupNorm(+SiLU), LayerNorm, GEGLU, flash attention.
// Ops are asynchronous: they enqueue work and return; download() and synchronize() wait. Two more
// streams carry copy_async's copies between device and pinned host memory (one per direction),
// ordered against the computation by events only.
#include "backend/backend.h"

#include <cuda_runtime.h>

#include <memory>
#include <string>

namespace fisedit {

namespace cuda {
class MemoryPool;
}

class CudaBackend final : public Backend {
public:
  // Throws Error(device) when no usable device is there (the message says why).
  explicit CudaBackend(int device = 0);
  ~CudaBackend() override;

  // Whether a CUDA device can be used; `why` receives the reason when not.
  static bool device_available(std::string* why = nullptr);

  DeviceKind kind() const override { return DeviceKind::cuda; }
  std::string name() const override;  // e.g. "NVIDIA H100 80GB HBM3 (CUDA, float16)"
  DType activation_dtype() const override { return DType::f16; }
  void synchronize() override;
  bool can_record() const override { return true; }
  DeviceTensor allocate(DType dtype, Shape shape) override;
  std::optional<DeviceMemory> device_memory() const override;
  void reset_device_peak() override;
  // Pinned (page-locked) host memory, from a pool of its own (cuda_memory.h).
  DeviceTensor allocate_host(DType dtype, Shape shape) override;
  std::optional<std::size_t> host_bytes_in_use() const override;
  using Backend::allocate;

  // Convolution problems whose cuDNN candidates were timed; a new size of a convolution already timed
  // at another size takes the engine timed fastest there, untimed.
  std::uint64_t conv_problems_timed() const;
  // GEMM problems whose algorithm cuBLASLt's heuristic was asked for on the calling thread (a new shape
  // in a new range of row counts); and a wait until the background lookups of the other ranges of the
  // shapes seen so far are done (cuda_gemm.cpp, "ranges made ready"): for tests.
  std::uint64_t gemm_heuristic_queries() const;
  void wait_gemm_ranges_ready() const;

  // Which attention runs where both could (cuda_attention_cudnn.cpp): cuDNN's fused flash attention
  // where it takes the shape and its query tiles fill the device (automatic), wherever it takes the
  // shape (cudnn), or never (kernels: kernels/attention). FISEDIT_ATTENTION_CUDNN=off|auto|on picks
  // the route a backend starts with (off when unset: not yet measured on a GPU); tests set it here
  // (none: the environment's again).
  enum class AttentionRoute { automatic, cudnn, kernels };
  void set_attention_route(std::optional<AttentionRoute> route);
  // What the cuDNN route did so far: attention calls it ran, plans it built (one per shape) and the
  // host time that took, shapes it refused and why the last one was refused.
  struct AttentionCudnnCounters {
    std::uint64_t calls = 0, plans = 0, refused = 0;
    double plan_ms = 0;
    std::string last_refusal;
  };
  AttentionCudnnCounters attention_cudnn_counters() const;

  cudaStream_t stream() const;
  cudaStream_t copy_stream() const;
  cuda::MemoryPool& memory_pool() const;
  cuda::MemoryPool& pinned_pool() const;

  struct State;  // handles, pool, caches: backend/cuda/cuda_state.h

protected:
  void upload_impl(const Tensor& host, DeviceTensor& out) override;
  void download_impl(const DeviceTensor& t, std::span<float> out) override;
  bool download_rgb8_impl(const DeviceTensor& t, std::span<std::uint8_t> out) override;
  ConvWeight prepare_conv_weight_impl(const Tensor& weight, const Tensor& bias) override;
  void linear_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias, Activation act,
                   DeviceTensor& out) override;
  void conv2d_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params, DeviceTensor& out) override;
  void linear_add_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                       const DeviceTensor& residual, DeviceTensor& out) override;
  void conv2d_add_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                       const DeviceTensor& addend, std::int64_t repeat, DeviceTensor& out) override;
  void scatter_positions_copy_impl(const DeviceTensor& base, const DeviceTensor& values, const DeviceTensor& positions,
                                   const DeviceTensor* addend, const DeviceTensor* inverse, DeviceTensor& out) override;
  void scatter_positions_into_impl(const DeviceTensor& base, const DeviceTensor& values, const DeviceTensor& positions,
                                   const DeviceTensor* addend) override;
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
  void convert_layout_impl(const DeviceTensor& x, bool to_nhwc, DeviceTensor& out) override;
  void copy_impl(const DeviceTensor& src, DeviceTensor& dst) override;
  void conv2d_at_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params, std::int64_t out_h,
                      std::int64_t out_w, const DeviceTensor& positions, const InputNorm* norm,
                      const DeviceTensor* appended, const DeviceTensor* residual, DeviceTensor& out) override;
  void gather_positions_impl(const DeviceTensor& x, const DeviceTensor& positions, DeviceTensor& out) override;
  void gather_rows_into_impl(std::span<const RowsAt> gathers) override;
  void copy_rows_into_impl(std::span<const RowsAt> copies) override;
  void scatter_rows_into_impl(std::span<const RowsAt> scatters) override;
  void poison_impl(DeviceTensor& x) override;
  void scatter_positions_impl(const DeviceTensor& values, const DeviceTensor& positions, DeviceTensor& out) override;
  void linear_group_impl(const DeviceTensor& x, const DeviceTensor& weights, DeviceTensor& out) override;
  void sampler_step_impl(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule, const DeviceTensor& x,
                         DeviceTensor* history, const DeviceTensor* noise, const DeviceTensor* mask,
                         const DeviceTensor* keep, DeviceTensor& flags, DeviceTensor& out) override;
  void sampler_input_impl(const DeviceTensor& x, float divisor, DeviceTensor& out) override;
  void select_positions_impl(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b,
                             DeviceTensor& out) override;

  std::unique_ptr<Recording> record_impl(const std::function<void()>& body, std::string* why) override;
  void copy_into_impl(std::span<const TensorCopy> copies) override;

  void copy_async_impl(std::span<const TensorCopy> copies, std::uint64_t ticket) override;
  void wait_copies_impl(std::uint64_t ticket) override;
  void wait_copies_on_host_impl(std::uint64_t ticket) override;
  void synchronize_copies_impl() override;

  void external_profiler(bool on) override;
  void profile_begin() override;
  void profile_end(const char* op) override;
  std::vector<OpTime> profile_collect() override;
  void mark_impl(const char* name) override;
  std::vector<Mark> take_marks_impl() override;

private:
  // Drops the copy batches whose event has passed (never waits).
  void retire_copies();

  // out = x . weight^T (+ bias) (+ residual when not null), then `act` (none with a residual).
  void gemm(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias, Activation act,
            const DeviceTensor* residual, DeviceTensor& out, std::int64_t groups = 1);
  // conv2d_impl, with an addend folded into the bias pass when not null (see conv2d_add_impl).
  void convolve(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params, const DeviceTensor* addend,
                std::int64_t repeat, DeviceTensor& out);
  // A convolution as im2col + GEMM at `count` output positions per image (all of them when
  // positions is null): sparse execution, and convolutions with too few channels for cuDNN's
  // tensor-core kernels.
  void conv_by_gemm(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params, std::int64_t out_w,
                    const DeviceTensor* positions, std::int64_t count, DeviceTensor& out,
                    const InputNorm* norm = nullptr, const DeviceTensor* appended = nullptr,
                    const DeviceTensor* residual = nullptr);

  // Runs the attention through cuDNN's fused flash attention when the route takes it there (see
  // AttentionRoute); false when it did not run.
  bool attention_cudnn(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                       const AttentionParams& params, DeviceTensor& out);

  std::unique_ptr<State> s_;
};

}  // namespace fisedit
