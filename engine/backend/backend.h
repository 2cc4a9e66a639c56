#pragma once
// The backend contract: what a device must provide for the models to run on it. One header, nothing
// else. Models (engine/models) are written against this interface only; the CPU backend
// (backend/cpu, float32) is the reference every other backend is tested against, op by op.
//
// Conventions
// - Activations are channels-last: images are [N, H, W, C], token sequences [N, L, C]. Layout
//   conversion happens only at a model's boundary (nchw_to_nhwc / nhwc_to_nchw), because the CUDA
//   backend runs cuDNN convolutions channels-last and every op then reads contiguous channels.
// - Activations and weights are stored in the backend's activation dtype (f32 on the CPU, f16 on
//   CUDA); accumulation is always float32. GroupNorm statistics are float32 everywhere.
// - Every public op is non-virtual: it checks its inputs (throwing fisedit::Error(invalid_argument)
//   naming the op and the shapes), allocates the output, and calls the backend's `*_impl`. Backends
//   therefore see only valid, contiguous inputs of their own activation dtype.
// - A Backend is used from one thread at a time. Device tensors must not outlive the backend that
//   allocated them (a CUDA buffer goes back to its backend's memory pool).
//
// Required: every pure virtual. Optional: virtuals with a default (synchronize, geglu_impl).
#include "core/dtype.h"
#include "core/sampler_rule.h"
#include "core/tensor.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <map>
#include <string>
#include <vector>

namespace fisedit {

enum class DeviceKind { cpu, cuda };

// torch's nearest-neighbour source index for output index o when resizing `in` to `out` elements
// (shared by every backend so they agree bit for bit).
inline std::int64_t nearest_source_index(std::int64_t o, std::int64_t in, std::int64_t out) {
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const auto i = static_cast<std::int64_t>(static_cast<float>(o) * scale);
  return i < in - 1 ? i : in - 1;
}

// Memory owned by one backend; the destructor frees it (and never throws).
class DeviceBuffer {
public:
  virtual ~DeviceBuffer() = default;
  virtual std::byte* data() = 0;  // a device address: dereference it only on that device
  virtual std::size_t size() const = 0;
  // Host memory the device copies to and from without staging (Backend::allocate_host): where the
  // activation cache spills what does not fit the device budget. Ops never read it.
  virtual bool host_resident() const { return false; }
};

// A contiguous, row-major tensor in device memory: a shared buffer, a byte offset, dtype and shape.
// Copies are cheap handles to the same memory (like torch tensors); views share the buffer.
class DeviceTensor {
public:
  DeviceTensor() = default;
  DeviceTensor(std::shared_ptr<DeviceBuffer> buffer, std::size_t offset, DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int i) const;  // negative i counts from the end
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  bool empty() const { return buffer_ == nullptr; }
  bool host_resident() const { return buffer_ && buffer_->host_resident(); }

  std::byte* data() const { return buffer_ ? buffer_->data() + offset_ : nullptr; }
  template <class T>
  T* data_as() const { return reinterpret_cast<T*>(data()); }

  // The memory this tensor lives in and where in it: the activation cache lays spilled tensors out by
  // buffer and offset, so that neighbours travel as one copy (edit/cache_store.h).
  const DeviceBuffer* buffer() const { return buffer_.get(); }
  std::size_t offset() const { return offset_; }
  // A tensor `offset` bytes into the same buffer; it must lie inside it.
  DeviceTensor view(std::size_t offset, DType dtype, Shape shape) const;

  // The same memory under another shape of the same element count.
  DeviceTensor reshaped(Shape shape) const;
  // Rows [begin, end) of the first dimension (e.g. one half of a CFG batch).
  DeviceTensor slice_rows(std::int64_t begin, std::int64_t end) const;

private:
  std::shared_ptr<DeviceBuffer> buffer_;
  std::size_t offset_ = 0;
  DType dtype_ = DType::f32;
  Shape shape_;
};

enum class Activation {
  none,
  silu,        // x * sigmoid(x)
  gelu,        // exact: 0.5 x (1 + erf(x / sqrt 2)) (OpenCLIP, the U-Net's GEGLU)
  quick_gelu,  // x * sigmoid(1.702 x) (OpenAI CLIP)
};

struct Conv2dParams {
  int stride = 1;
  // Asymmetric padding exists for the VAE encoder's downsampler (pad right and bottom by one, then a
  // stride-2 convolution); a backend whose library only pads symmetrically pads explicitly first.
  int pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
  static Conv2dParams same(int stride, int padding) { return {stride, padding, padding, padding, padding}; }
};

// A convolution's weights in the layout the backend that prepared them chose (only it reads them).
struct ConvWeight {
  DeviceTensor weight;
  DeviceTensor bias;  // [Cout], or empty
  int out_channels = 0, in_channels = 0, kernel_h = 0, kernel_w = 0;
};

// Per-(batch, group) GroupNorm statistics, float32 [N, G] each: the sparse editor normalises a
// few tiles with the statistics of the full activation it cached.
struct GroupNormStats {
  DeviceTensor mean;
  DeviceTensor var;  // biased (divided by the element count), as torch computes it; eps not added
};

// The GroupNorm (given statistics, then SiLU when asked) a sparse convolution applies to its input as
// it gathers the input's patches: conv2d_at(group_norm(x), ...) without normalising x in full.
struct InputNorm {
  const DeviceTensor* gamma = nullptr;  // [C], activation dtype
  const DeviceTensor* beta = nullptr;   // [C]
  const GroupNormStats* stats = nullptr;  // float32 [N, groups]
  int groups = 1;
  float eps = 1e-5f;
  bool silu = false;
};

struct AttentionParams {
  int heads = 1;
  float scale = 1.0f;   // applied to q . k before the softmax
  bool causal = false;  // query i attends to keys j <= i (top-left aligned, like torch's is_causal)
  bool upcast = false;  // scores and softmax in float32 even with fp16 activations (SD2's U-Net)
};

class Backend {
public:
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // ---- The device -------------------------------------------------------------------------------
  virtual DeviceKind kind() const = 0;
  virtual std::string name() const = 0;  // shown to users, e.g. "CPU (float32, 16 threads)"
  virtual DType activation_dtype() const = 0;
  virtual void synchronize() {}  // optional: blocks until queued work is done

  // ---- Memory -----------------------------------------------------------------------------------
  // Uninitialised memory; throws Error(out_of_memory).
  virtual DeviceTensor allocate(DType dtype, Shape shape) = 0;
  // Optional: the device's memory, for the UI's status bar, sizing caches and the benchmark; none where
  // the memory is the host's (the OS reports that better).
  struct DeviceMemory {
    std::size_t in_use = 0;  // held by live buffers (weights included); freed blocks kept for reuse are not
    std::size_t peak = 0;    // the most in_use since the backend started or reset_device_peak()
    std::size_t free = 0;    // the driver's view of the whole device, other processes included
    std::size_t total = 0;
    // Blocks the allocator had to ask the driver for so far (its free lists could not serve them), and
    // how often a failed request emptied its cache to retry: costs ops pay beyond their own work.
    std::size_t driver_allocations = 0;
    std::size_t cache_flushes = 0;
    double driver_allocation_ms = 0;  // the host's time in those driver calls
  };
  virtual std::optional<DeviceMemory> device_memory() const { return {}; }
  // Optional: starts a new peak (after queued work is done).
  virtual void reset_device_peak() {}
  DeviceTensor allocate(Shape shape) { return allocate(activation_dtype(), std::move(shape)); }
  // Float tensors (F64/F32/F16/BF16) become the activation dtype; integer tensors become I32 (token
  // ids), refusing values outside its range.
  DeviceTensor upload(const Tensor& host);
  // Float32 on the host, whatever the device dtype.
  Tensor download(const DeviceTensor& t);
  // A decoded image (a float tensor on the device, values about [-1, 1]) as 8 bits per value in its
  // own element order, as diffusers' numpy_to_pil makes it: round(255 * clamp(x / 2 + 0.5, 0, 1)),
  // ties to even. nullopt when any value is NaN or infinite. On CUDA the conversion runs on the
  // device and a quarter of the float32 bytes travel.
  std::optional<std::vector<std::uint8_t>> download_rgb8(const DeviceTensor& t);
  // A convolution's weights, uploaded once. weight [Cout, Cin, kh, kw] (torch layout), bias [Cout]
  // or an empty Tensor.
  ConvWeight prepare_conv_weight(const Tensor& weight, const Tensor& bias);

  // A copy in new memory, bit for bit.
  DeviceTensor clone(const DeviceTensor& x);
  // Every byte of x set to 0xff (NaN in every float type): memory whose values nothing may read, so
  // that a read shows in the result instead of passing for stale values.
  void poison(DeviceTensor& x);

  // ---- Host-resident memory and the copy stream (the activation cache's spill and prefetch) --------
  // Uninitialised host memory that copy_async moves to and from the device at full bus speed (pinned
  // on CUDA; ordinary memory on the CPU, marked host-resident all the same, so that one code path runs
  // and is tested everywhere). Ops refuse host-resident inputs: copy them to a device tensor first.
  // Throws Error(out_of_memory).
  virtual DeviceTensor allocate_host(DType dtype, Shape shape) = 0;
  // Optional: bytes held by live host-resident buffers.
  virtual std::optional<std::size_t> host_bytes_in_use() const { return {}; }

  // One copy of copy_async: src and dst of the same dtype and shape, each on the device or host-resident.
  struct TensorCopy {
    DeviceTensor src, dst;
  };
  // A point in the copy stream's order: wait() makes the computation wait for the copies before it.
  class CopyFence {
  public:
    CopyFence() = default;  // no copies: nothing to wait for
    bool empty() const { return ticket_ == 0; }

  private:
    friend class Backend;
    explicit CopyFence(std::uint64_t ticket) : ticket_(ticket) {}
    std::uint64_t ticket_ = 0;
  };
  // Queues the copies on a stream of their own, behind all work queued for the computation so far
  // (so a source may be the output of a queued op, and a destination the input of one, read first);
  // returns at once, without waiting for the host or the device. Both sides' buffers are kept alive
  // until the copies are done, so the caller may drop them. A synchronous backend copies at once.
  CopyFence copy_async(std::span<const TensorCopy> copies);
  // Work queued for the computation from now on waits, on the device, until the copies of `fence`'s
  // copy_async call are done (and those queued before it in the same direction, to or from the host;
  // a prefetch never waits for an earlier spill). Never blocks the host.
  void wait(const CopyFence& fence);
  // Blocks the host until the copies of `fence` are done (and those queued before them in the same
  // direction): their host-resident destinations may be read then.
  void wait_host(const CopyFence& fence);
  // Blocks the host until every queued copy is done (tests, teardown; never in a step loop).
  void synchronize_copies();
  // Queued copies (copy_async calls) and their bytes since the backend was made: how tests see that
  // a prefetch happened and how much it moved.
  struct CopyCounters {
    std::uint64_t calls = 0, bytes = 0;
  };
  CopyCounters copy_counters() const { return copy_counters_; }

  // ---- Recorded work (optional): a step's ops replayed as one launch ---------------------------------
  // The ops `body` queues, recorded instead of run (CUDA graphs), for replay() to run again and again.
  // A replay reads and writes the very memory the recorded ops did: the caller refreshes the inputs in
  // place (copy_into) and reads the outputs in place. Memory the body allocates, or frees, stays reserved
  // for the recording until it is destroyed. Nothing runs until the first replay.
  class Recording {
  public:
    virtual ~Recording() = default;
    virtual void replay() = 0;
  };
  // Null when this backend cannot record (the CPU backend; any backend while profiling): `body` has not
  // run. Also null, with the reason in `why`, when the device refused to record what `body` queued (an
  // op that cannot be recorded) or `body` threw an Error while recording: then `body` ran on the host
  // only and nothing it made holds data; run the work again without recording. Other exceptions pass.
  std::unique_ptr<Recording> record(const std::function<void()>& body, std::string* why = nullptr);
  // Optional: whether record() can work here at all (before preparing memory for it).
  virtual bool can_record() const { return false; }
  // Device-to-device copies in the computation's order (each pair of one dtype and shape, neither
  // host-resident): a recording's inputs refreshed, or its outputs kept. One launch per 128 pairs on CUDA.
  void copy_into(std::span<const TensorCopy> copies);

  // ---- Profiling --------------------------------------------------------------------------------
  struct OpTime {
    std::string op;
    int calls = 0;
    double total_ms = 0;
    // Host time inside the op's calls (argument checks, allocation, launches; on CUDA also the
    // profiling events): near total_ms, the host's launches bound the op, not the device.
    double host_ms = 0;
  };
  // While on, the device time of every op is accumulated by op name (ops inside ops count for the
  // outer one). Waits for the device when switched and when reported.
  void set_profiling(bool on);
  // Accumulated times, largest first; resets them.
  std::vector<OpTime> profile_report();
  // Marks on the computation's timeline, for benchmarks: while marking is on, mark(name) notes the point
  // the computation has reached (on CUDA an event behind the work queued so far, so a replayed
  // recording can be cut into its parts and the device's idle time shows; elsewhere the host's clock,
  // ops running at once); take_marks() waits for them and returns each as its name and the ms since the
  // mark before it (the first: 0), then forgets them. Off, mark() does nothing. Never inside record().
  void set_marking(bool on);
  bool marking() const { return marking_; }
  void mark(const char* name) {
    if (marking_) mark_impl(name);
  }
  struct Mark {
    std::string name;
    double ms = 0;
  };
  std::vector<Mark> take_marks();
  // Optional: brackets work for a profiler outside the program (on CUDA cudaProfilerStart/Stop, what
  // Nsight Compute's --profile-from-start off waits for); nothing elsewhere. Waits for queued work.
  virtual void external_profiler(bool on) { (void)on; }

  // ---- Ops (all required unless marked) ---------------------------------------------------------
  // x [..., K] . weight[N, K]^T + bias[N] -> [..., N], then `act`. bias may be empty.
  DeviceTensor linear(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                      Activation act = Activation::none);
  // linear(x, weight, bias) + residual, the residual shaped like the output: a residual connection
  // in the same pass (the CUDA backend adds it in the GEMM's epilogue, saving a read and a write of
  // the activation and a launch).
  DeviceTensor linear_add(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                          const DeviceTensor& residual);
  // [N, H, W, Cin] -> [N, Ho, Wo, Cout], Ho = (H + pad_top + pad_bottom - kh) / stride + 1.
  DeviceTensor conv2d(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params);
  // conv2d(x) + addend, addend [N, Ho, Wo, Cout] (a residual connection) or [N, 1, 1, Cout] (a time
  // embedding, broadcast over positions), fused with the bias pass where the backend can.
  DeviceTensor conv2d_add(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                          const DeviceTensor& addend);
  // [N, ..., C] -> [N, ..., C], statistics over (positions, C / groups channels) per (n, group).
  // `stats_out` (optional) receives the statistics used; `stats_in` (optional) replaces computing them.
  DeviceTensor group_norm(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                          int groups, float eps, bool silu = false, GroupNormStats* stats_out = nullptr,
                          const GroupNormStats* stats_in = nullptr);
  // [..., C] -> [..., C], normalised over C.
  DeviceTensor layer_norm(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta, float eps);
  // q [B, Lq, heads * D], k and v [B, Lk, heads * D] -> [B, Lq, heads * D]: softmax(scale q k^T) v
  // per head, heads side by side in the channel dimension (as diffusers' and CLIP's projections give).
  DeviceTensor attention(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                         const AttentionParams& params);
  // Attention with the probabilities in hand (cross-attention control, docs/method.md section 3.3):
  // the same maths as `attention` split in two, so the probabilities can be kept and edited in between. Meant
  // for cross-attention, where Lk is the 77 text tokens and [B, heads, Lq, Lk] is affordable.
  // q [B, Lq, heads * D], k [B, Lk, heads * D] -> probabilities [B, heads, Lq, Lk]: softmax(scale q k^T)
  // per head (params.causal: 0 past the diagonal), computed in float32, stored in the activation dtype.
  DeviceTensor attention_probs(const DeviceTensor& q, const DeviceTensor& k, const AttentionParams& params);
  // probs [B, heads, Lq, Lk], v [B, Lk, heads * D] -> [B, Lq, heads * D]: probs . v per head, laid out
  // as `attention`'s output (attention_apply(attention_probs(q, k, p), v) is attention(q, k, v, p)).
  DeviceTensor attention_apply(const DeviceTensor& probs, const DeviceTensor& v);
  // probs [B, heads, Lq, Lk], source [S, heads, Lq, Ls], columns I32 [Lk] -> a copy of probs in which,
  // for batch items first .. first + S - 1, every column j with columns[j] >= 0 is source's column
  // columns[j] (of batch item j - first). Entries of columns must lie in [-1, Ls): the CPU backend
  // throws otherwise; the CUDA backend keeps the new column (checking would synchronise the stream).
  DeviceTensor replace_attention_columns(const DeviceTensor& probs, const DeviceTensor& source,
                                         const DeviceTensor& columns, std::int64_t first);
  // [...] -> [...]
  DeviceTensor activation(const DeviceTensor& x, Activation act);
  // [..., 2F] -> [..., F]: x[..., :F] * gelu(x[..., F:]) (diffusers' GEGLU after its projection).
  DeviceTensor geglu(const DeviceTensor& x);
  // a [...] op b -> [...]. b has a's shape, or a broadcast form of it: b's shape, left-padded with
  // ones to a's rank, is a's leading dims, then ones, then a's trailing dims. So [C] and [L, C] (a
  // suffix) and [N, 1, 1, C] (a time embedding over [N, H, W, C]) all broadcast.
  DeviceTensor add(const DeviceTensor& a, const DeviceTensor& b);
  DeviceTensor mul(const DeviceTensor& a, const DeviceTensor& b);
  // [...] -> [...] * s
  DeviceTensor scale(const DeviceTensor& x, float s);
  // [N, H, W, C] -> [N, Ho, Wo, C], nearest neighbour as torch's F.interpolate(mode="nearest"):
  // source index floor(o * (in / out)) in float, exactly o / 2 when doubling. Odd latent sizes need
  // targets other than 2x (the U-Net upsamples to its skip connection's size).
  DeviceTensor upsample_nearest(const DeviceTensor& x, std::int64_t out_h, std::int64_t out_w);
  // [N, H, W, C] -> [N, 2H, 2W, C]. Another rank is refused by upsample_nearest, without reading dims
  // x does not have (the ASan suite's assertion: x.dim(2) of a [2, 3] tensor read past its shape).
  DeviceTensor upsample_nearest2x(const DeviceTensor& x) {
    const bool nhwc = x.rank() == 4;
    return upsample_nearest(x, nhwc ? 2 * x.dim(1) : 0, nhwc ? 2 * x.dim(2) : 0);
  }
  // [..., Ca], [..., Cb] -> [..., Ca + Cb] (the U-Net's skip connections).
  DeviceTensor concat_channels(const DeviceTensor& a, const DeviceTensor& b);
  // [..., C] -> [..., end - begin]
  DeviceTensor slice_channels(const DeviceTensor& x, std::int64_t begin, std::int64_t end);
  // table [V, C], ids I32 [...] -> [..., C]; ids outside [0, V) are an Error.
  DeviceTensor embedding(const DeviceTensor& table, const DeviceTensor& ids);
  // mask [P] (nonzero: take a), a and b [N, P, C] (P positions, e.g. H * W of [N, H, W, C]) -> [N, P, C]:
  // a's values where the mask is set, b's elsewhere, copied bit for bit. Sparse editing keeps the
  // cached activations outside the edited region with it.
  DeviceTensor select_positions(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b);
  // x [..., K] against G matrices of one shape, weights [G, N, K] (no bias) -> [G, ..., N]: G linears of
  // one input as one op (one GEMM launch on CUDA), e.g. an attention's queries, keys and values.
  DeviceTensor linear_group(const DeviceTensor& x, const DeviceTensor& weights);

  // ---- Sampling on the device (an edit's sparse steps; core/sampler_rule.h) ------------------------
  // Latents are float32 here, as on the host, and every value equals the host samplers' bit for bit.
  // One step: the U-Net's prediction [B, C, h, w] (activation dtype; B = 2: classifier-free guidance,
  // the unconditional image first, guide(); B = 1: as it is) and latents x [C, h, w] -> the next latents
  // (new memory). `history` (like x: DPM's previous estimate) is read when rule.history and, when
  // given, overwritten with this step's estimate; `noise` (like x) is read when rule.noise. Where `mask`
  // ([h, w] float32, or null) is 0 the result is `keep` (like x) instead. `flags` (I32, one value)
  // gains bit 1 when a guided prediction is not finite and bit 2 when a computed latent is not.
  DeviceTensor sampler_step(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule,
                            const DeviceTensor& x, DeviceTensor* history, const DeviceTensor* noise,
                            const DeviceTensor* mask, const DeviceTensor* keep, DeviceTensor& flags);
  // The U-Net's input from latents x [C, h, w] float32: x / divisor in the activation dtype, `batch`
  // times: [batch, C, h, w].
  DeviceTensor sampler_input(const DeviceTensor& x, float divisor, std::int64_t batch);
  // Float32 values as they are (upload makes floats the activation dtype), through host-resident memory
  // and the copy stream; the computation queued after this waits for them.
  DeviceTensor upload_f32(std::span<const float> values, Shape shape);

  // ---- Sparse execution (docs/method.md section 3.11): the same work at a subset of positions -------
  // `positions` is I32 [P]: indices into H * W (row-major) of the output's level, ascending, unique.
  // x [N, H, W, Cin] -> [N, P, Cout]: the convolution's output at those positions only (the GEMM work
  // scales with P; halos are read from x). With `norm`, the convolution of group_norm(x) (+ SiLU),
  // equal to normalising x first (the same arithmetic per element) without the pass over all of x.
  // With `appended` [N, H, W, Ca], the input is x's channels followed by its (concat_channels(x,
  // appended), Cin = C + Ca) without making that concatenation: the up path's skip connections.
  // With `residual` [N, P, Cout], the output plus it (in the GEMM's epilogue on CUDA): a residual
  // connection at the active positions.
  DeviceTensor conv2d_at(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                         const DeviceTensor& positions, const InputNorm* norm = nullptr,
                         const DeviceTensor* appended = nullptr, const DeviceTensor* residual = nullptr);
  // x [N, L, C] -> [N, P, C]: the rows at positions.
  DeviceTensor gather_positions(const DeviceTensor& x, const DeviceTensor& positions);
  // Many gathers into memory the caller owns: each dst [N, P, C] becomes src [N, L, C]'s rows at
  // positions (I32 [P]), as gather_positions makes them. One launch for all on the CUDA backend: an
  // edit's replayed step keeps the rows it computed of ~100 outputs this way (pipeline/step_replay.h).
  struct RowsAt {
    DeviceTensor src, positions, dst;
  };
  void gather_rows_into(std::span<const RowsAt> gathers);
  // Many row copies between tensors of one shape: each dst [N, L, C] takes src [N, L, C]'s rows at
  // positions (I32 [P]); its other rows stay. One launch for all on the CUDA backend: an edit's
  // replayed step copies in the cached rows it reads near its active ones this way.
  void copy_rows_into(std::span<const RowsAt> copies);
  // Many scatters in place: each dst [N, L, C] takes src [N, P, C] as its rows at positions (I32 [P]);
  // its other rows stay. One launch for all on the CUDA backend: a sparse transformer block writes its
  // new keys and values this way.
  void scatter_rows_into(std::span<const RowsAt> scatters);
  // base [N, L, C], values [N, P, C] -> a copy of base with the rows at positions replaced by values,
  // plus `addend` when given: [N, P, C] (a residual) or [N, 1, C] (per image, e.g. a time embedding).
  // `inverse`, when given, is I32 [L], the inverse of positions (each place's row in values, or -1):
  // it spares the backend a search per place.
  DeviceTensor scatter_positions(const DeviceTensor& base, const DeviceTensor& values, const DeviceTensor& positions,
                                 const DeviceTensor* addend = nullptr, const DeviceTensor* inverse = nullptr);
  // The same into base itself (its other rows untouched): for memory the caller owns outright, e.g. a
  // recording's private copy of a cached record (pipeline/step_replay.h). Costs the active rows only.
  void scatter_positions_into(const DeviceTensor& base, const DeviceTensor& values, const DeviceTensor& positions,
                              const DeviceTensor* addend = nullptr);

  // [N, C, H, W] <-> [N, H, W, C], at model boundaries.
  DeviceTensor nchw_to_nhwc(const DeviceTensor& x);
  DeviceTensor nhwc_to_nchw(const DeviceTensor& x);

protected:
  Backend() = default;

  // Optional: timing an op on the device (the default times it on the host around synchronize(),
  // right for synchronous backends). begin/end pair up around the outermost op; collect returns and
  // clears what was timed.
  virtual void profile_begin();
  virtual void profile_end(const char* op);
  virtual std::vector<OpTime> profile_collect();
  // Optional: mark() and take_marks() on the device (the default reads the host's clock, right for
  // synchronous backends); take_marks_impl returns and forgets the marks' times in ms from any origin.
  virtual void mark_impl(const char* name);
  virtual std::vector<Mark> take_marks_impl();

  // How b broadcasts over a: a is viewed as [outer, repeat, inner], b as [outer, inner].
  struct Broadcast {
    std::int64_t outer = 1, repeat = 1, inner = 1;
  };
  enum class BinaryOp { add, mul };

  // Implementations. Inputs are validated and of the activation dtype unless stated; `out` is
  // allocated with the output shape.
  virtual void upload_impl(const Tensor& host, DeviceTensor& out) = 0;  // float -> act. dtype, int -> I32
  virtual void download_impl(const DeviceTensor& t, std::span<float> out) = 0;
  // Optional (default: download_impl, then the conversion on the host): false when a value is not finite.
  virtual bool download_rgb8_impl(const DeviceTensor& t, std::span<std::uint8_t> out);
  virtual ConvWeight prepare_conv_weight_impl(const Tensor& weight, const Tensor& bias) = 0;
  virtual void linear_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                           Activation act, DeviceTensor& out) = 0;
  virtual void conv2d_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                           DeviceTensor& out) = 0;
  // Optional: the defaults run linear_impl / conv2d_impl, then binary_impl in place. `repeat` is how
  // many output rows (positions) share one row of the addend: 1 for a residual, Ho * Wo for a time
  // embedding.
  virtual void linear_add_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                               const DeviceTensor& residual, DeviceTensor& out);
  virtual void conv2d_add_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                               const DeviceTensor& addend, std::int64_t repeat, DeviceTensor& out);
  // x viewed as [N, L, C]. stats_out and stats_in are null or hold [N, G] f32 tensors.
  virtual void group_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                               int groups, float eps, bool silu, GroupNormStats* stats_out,
                               const GroupNormStats* stats_in, DeviceTensor& out) = 0;
  virtual void layer_norm_impl(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                               float eps, DeviceTensor& out) = 0;
  virtual void attention_impl(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                              const AttentionParams& params, DeviceTensor& out) = 0;
  // out [B, heads, Lq, Lk]
  virtual void attention_probs_impl(const DeviceTensor& q, const DeviceTensor& k, const AttentionParams& params,
                                    DeviceTensor& out) = 0;
  // out [B, Lq, heads * D]
  virtual void attention_apply_impl(const DeviceTensor& probs, const DeviceTensor& v, DeviceTensor& out) = 0;
  // out already holds a copy of probs.
  virtual void replace_attention_columns_impl(const DeviceTensor& source, const DeviceTensor& columns,
                                              std::int64_t first, DeviceTensor& out) = 0;
  virtual void activation_impl(const DeviceTensor& x, Activation act, DeviceTensor& out) = 0;
  // Optional: the default composes slice_channels, activation and mul.
  virtual void geglu_impl(const DeviceTensor& x, DeviceTensor& out);
  virtual void binary_impl(BinaryOp op, const DeviceTensor& a, const DeviceTensor& b, Broadcast shape,
                           DeviceTensor& out) = 0;
  virtual void scale_impl(const DeviceTensor& x, float s, DeviceTensor& out) = 0;
  // out [N, Ho, Wo, C] gives the target size.
  virtual void upsample_nearest_impl(const DeviceTensor& x, DeviceTensor& out) = 0;
  virtual void concat_channels_impl(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) = 0;
  virtual void slice_channels_impl(const DeviceTensor& x, std::int64_t begin, DeviceTensor& out) = 0;
  virtual void embedding_impl(const DeviceTensor& table, const DeviceTensor& ids, DeviceTensor& out) = 0;
  // dst has src's dtype and shape.
  virtual void copy_impl(const DeviceTensor& src, DeviceTensor& dst) = 0;
  virtual void poison_impl(DeviceTensor& x) = 0;
  // out [N, P, Cout]; positions valid for the output size the params give; norm, appended and residual
  // checked (or null).
  virtual void conv2d_at_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                              std::int64_t out_h, std::int64_t out_w, const DeviceTensor& positions,
                              const InputNorm* norm, const DeviceTensor* appended, const DeviceTensor* residual,
                              DeviceTensor& out) = 0;
  // x and out viewed as [N, L, C] and [N, P, C].
  virtual void gather_positions_impl(const DeviceTensor& x, const DeviceTensor& positions, DeviceTensor& out) = 0;
  // Optional: checked as gather_rows_into says; the default runs gather_positions_impl for each.
  virtual void gather_rows_into_impl(std::span<const RowsAt> gathers);
  // Optional: checked as copy_rows_into says; the default gathers each span's rows and scatters them.
  virtual void copy_rows_into_impl(std::span<const RowsAt> copies);
  // Optional: checked as scatter_rows_into says; the default runs scatter_positions_into_impl for each.
  virtual void scatter_rows_into_impl(std::span<const RowsAt> scatters);
  // out already holds a copy of base; write values' rows at positions.
  virtual void scatter_positions_impl(const DeviceTensor& values, const DeviceTensor& positions, DeviceTensor& out) = 0;
  // Optional: out = base with the rows at positions replaced by values (+ addend, checked, or null;
  // inverse checked, or null); the default adds, copies base into out, then scatter_positions_impl. (A
  // sparse step makes one per spatial layer: one pass is fewer launches.)
  virtual void scatter_positions_copy_impl(const DeviceTensor& base, const DeviceTensor& values,
                                           const DeviceTensor& positions, const DeviceTensor* addend,
                                           const DeviceTensor* inverse, DeviceTensor& out);
  // Optional: base's rows at positions become values (+ addend, checked, or null); the default adds, then
  // scatter_positions_impl.
  virtual void scatter_positions_into_impl(const DeviceTensor& base, const DeviceTensor& values,
                                           const DeviceTensor& positions, const DeviceTensor* addend);
  // Optional: the default runs linear_impl for each matrix into its slice of `out`.
  virtual void linear_group_impl(const DeviceTensor& x, const DeviceTensor& weights, DeviceTensor& out);
  // Checked as sampler_step says; `out` like x.
  virtual void sampler_step_impl(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule,
                                 const DeviceTensor& x, DeviceTensor* history, const DeviceTensor* noise,
                                 const DeviceTensor* mask, const DeviceTensor* keep, DeviceTensor& flags,
                                 DeviceTensor& out) = 0;
  virtual void sampler_input_impl(const DeviceTensor& x, float divisor, DeviceTensor& out) = 0;
  // mask [P], a, b and out viewed as [N, P, C].
  virtual void select_positions_impl(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b,
                                     DeviceTensor& out) = 0;
  // to_nhwc: [N, C, H, W] -> [N, H, W, C]; otherwise the reverse.
  virtual void convert_layout_impl(const DeviceTensor& x, bool to_nhwc, DeviceTensor& out) = 0;
  // Optional, for asynchronous backends: queue `copies` (validated, none empty) as copy number
  // `ticket` (1, 2, ... in call order); wait for copy `ticket` and those before it; wait on the host
  // for all of them. The defaults copy at once with copy_impl, right for a backend whose memory is
  // the host's.
  virtual void copy_async_impl(std::span<const TensorCopy> copies, std::uint64_t ticket);
  virtual void wait_copies_impl(std::uint64_t ticket) { (void)ticket; }
  virtual void wait_copies_on_host_impl(std::uint64_t ticket) { (void)ticket; }
  // Optional: the default cannot record (returns null without running body).
  virtual std::unique_ptr<Recording> record_impl(const std::function<void()>& body, std::string* why);
  // Optional: the default copies pair by pair with copy_impl.
  virtual void copy_into_impl(std::span<const TensorCopy> copies);
  virtual void synchronize_copies_impl() {}

private:
  friend class OpScope;
  DeviceTensor binary(BinaryOp op, const char* name, const DeviceTensor& a, const DeviceTensor& b);
  // scatter_positions' argument checks (throws Error naming `op`).
  void check_scatter(const char* op, const DeviceTensor& base, const DeviceTensor& values, const DeviceTensor& positions,
                     const DeviceTensor* addend, const DeviceTensor* inverse);

  bool profiling_ = false;
  bool marking_ = false;
  std::vector<Mark> host_marks_;
  int op_depth_ = 0;
  std::uint64_t last_ticket_ = 0;
  CopyCounters copy_counters_;
  double host_begin_ms_ = 0;
  std::map<std::string, OpTime> host_times_;
  double call_begin_ms_ = 0;                     // the outermost op's entry, host clock
  std::map<std::string, double> call_host_ms_;   // host time inside ops, by op
};

}  // namespace fisedit
