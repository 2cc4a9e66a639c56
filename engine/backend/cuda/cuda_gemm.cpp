// Linear layers on cuBLASLt: out[M, N] = x[M, K] . W[N, K]^T (+ bias), fp16 storage, float32
// compute (CUBLAS_COMPUTE_32F). Row-major tensors are column-major transposes to cuBLASLt, so it
// computes out^T[N, M] = W (stored [K, N] column-major, transposed) . x^T ([K, M]): no copies.
// The bias rides in cuBLASLt's BIAS epilogue. Activations run in kernels/bias_act afterwards,
// because cuBLASLt's GELU epilogue is the tanh approximation and the engine's GELU is erf-exact
// (and SiLU / quick GELU have no epilogue at all).
// Descriptors, layouts and the heuristic's algorithm are built once per problem and cached: the
// U-Net calls the same few dozen shapes every step. A sparse edit's GEMMs have as many rows as its
// mask has active positions, a new count per level with every new mask: asking cuBLASLt's heuristic
// for each (~0.5 ms of host time apiece, 50-100 ms over an edit's first sparse step, measured on an
// H100 host) is spared by reusing the algorithm found for the same shape with a row count in the same
// power-of-two range, once cublasLtMatmulAlgoCheck accepts it for the exact one. (One range for all
// counts up to 4096 was tried: the dense step's 288- and 1152-row GEMMs then shared an algorithm and
// the step lost 1.4 ms.)
#include "backend/cuda/cuda_state.h"

#include "bias_act.cuh"

#include "core/env.h"

#include <algorithm>
#include <bit>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

namespace fisedit {
namespace {

struct MatmulDescDestroy {
  void operator()(cublasLtMatmulDesc_t d) const { cublasLtMatmulDescDestroy(d); }
};
struct LayoutDestroy {
  void operator()(cublasLtMatrixLayout_t l) const { cublasLtMatrixLayoutDestroy(l); }
};
struct PreferenceDestroy {
  void operator()(cublasLtMatmulPreference_t p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = cuda::UniqueHandle<cublasLtMatmulDesc_t, MatmulDescDestroy>;
using Layout = cuda::UniqueHandle<cublasLtMatrixLayout_t, LayoutDestroy>;
using Preference = cuda::UniqueHandle<cublasLtMatmulPreference_t, PreferenceDestroy>;

// cuBLASLt's recommendation for Hopper; enough for its split-K and stream-K kernels.
constexpr std::size_t kGemmWorkspaceBytes = std::size_t{32} << 20;

// The largest power of two (up to 256) dividing the address: what cuBLASLt may assume of a pointer.
int alignment(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  int a = 256;
  while (a > 1 && address % static_cast<std::uintptr_t>(a) != 0) a /= 2;
  return a;
}

// A column-major fp16 matrix of `rows` x `cols` with leading dimension `ld`.
Layout make_layout(std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  cublasLtMatrixLayout_t l{};
  FISEDIT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, CUDA_R_16F, static_cast<std::uint64_t>(rows),
                                                  static_cast<std::uint64_t>(cols), ld));
  return Layout(l);
}

template <class T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const T& value) {
  FISEDIT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof value));
}

template <class T>
void set_preference(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attribute, T value) {
  FISEDIT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value));
}

kernels::BiasActivation kernel_activation(Activation act) {
  switch (act) {
    case Activation::none: return kernels::BiasActivation::none;
    case Activation::silu: return kernels::BiasActivation::silu;
    case Activation::gelu: return kernels::BiasActivation::gelu;
    case Activation::quick_gelu: return kernels::BiasActivation::quick_gelu;
  }
  return kernels::BiasActivation::none;
}

}  // namespace

struct CudaBackend::State::GemmPlan {
  MatmulDesc desc;
  Layout w, x, out;  // A, B and C = D in cuBLASLt's terms
  cublasLtMatmulAlgo_t algo{};
  bool bias_epilogue = false;
};

namespace {

using GemmPlan = CudaBackend::State::GemmPlan;

// The plan for out[M, N] = x[M, K] . W[N, K]^T, or null when cuBLASLt offers no algorithm (then the
// caller retries without the bias epilogue). With `known`, that algorithm when cuBLASLt accepts it for
// this problem, else the heuristic's.
std::shared_ptr<GemmPlan> make_plan(cublasLtHandle_t lt, std::int64_t groups, std::int64_t m, std::int64_t n, std::int64_t k,
                                    bool bias_epilogue, int align_x, int align_w, int align_out,
                                    std::size_t workspace_bytes, const cublasLtMatmulAlgo_t* known = nullptr) {
  auto plan = std::make_shared<GemmPlan>();
  cublasLtMatmulDesc_t desc{};
  FISEDIT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  plan->desc = MatmulDesc(desc);
  set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
  set_desc(desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (bias_epilogue) {
    set_desc(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
    set_desc(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, CUDA_R_16F);
  }
  plan->bias_epilogue = bias_epilogue;
  plan->w = make_layout(k, n, k);    // W[N, K] row-major = [K, N] column-major, used transposed
  plan->x = make_layout(k, m, k);    // x[M, K] row-major = [K, M] column-major
  plan->out = make_layout(n, m, n);  // out[M, N] row-major = [N, M] column-major
  if (groups > 1) {  // G matrices [G, N, K] against one x, into [G, M, N]: strided batches, x's stride 0
    const auto batches = static_cast<std::int32_t>(groups);
    const auto batch = [&](cublasLtMatrixLayout_t l, std::int64_t stride) {
      FISEDIT_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batches, sizeof batches));
      FISEDIT_CUBLAS_CHECK(
          cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
    };
    batch(plan->w.get(), n * k);
    batch(plan->x.get(), 0);
    batch(plan->out.get(), m * n);
  }

  cublasLtMatmulHeuristicResult_t checked{};
  if (known && cublasLtMatmulAlgoCheck(lt, desc, plan->w.get(), plan->x.get(), plan->out.get(), plan->out.get(), known,
                                       &checked) == CUBLAS_STATUS_SUCCESS &&
      checked.workspaceSize <= workspace_bytes) {
    plan->algo = *known;
    return plan;
  }

  cublasLtMatmulPreference_t pref{};
  FISEDIT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const Preference preference(pref);
  set_preference(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, static_cast<std::uint64_t>(workspace_bytes));
  set_preference(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, static_cast<std::uint32_t>(align_w));
  set_preference(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, static_cast<std::uint32_t>(align_x));
  set_preference(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, static_cast<std::uint32_t>(align_out));
  set_preference(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, static_cast<std::uint32_t>(align_out));

  // The heuristic's first algorithm. Timing its first six on the call's operands, and asking only for
  // split-K that reduces in the output itself, were measured (H100, 2026-12-07): within noise of this
  // (-0.4%, -0.3% of a sparse step), so neither is kept.
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(lt, desc, plan->w.get(), plan->x.get(), plan->out.get(),
                                                               plan->out.get(), pref, 1, &result, &found);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || (status == CUBLAS_STATUS_SUCCESS && found == 0)) return nullptr;
  FISEDIT_CUBLAS_CHECK(status);
  plan->algo = result.algo;
  return plan;
}

// FISEDIT_GEMM_WARM=0 (read once): no background lookups of other row-count ranges (the benchmark's
// comparison); otherwise a shape that met the heuristic has every range looked up off the caller.
bool warm_ranges() {
  static const bool on = env_flag("FISEDIT_GEMM_WARM", true);
  return on;
}
// The ranges looked up: row counts 16 to 32768 (an edit's sparse GEMMs have 2 x its active positions,
// or 2 x 9 x them for a convolution's columns).
constexpr std::int64_t kWarmRowsFrom = 16, kWarmRowsTo = std::int64_t{1} << 15;

// D = alpha W x + beta C with `algo` on the stream.
cublasStatus_t run_plan(CudaBackend::State& s, const GemmPlan& plan, const cublasLtMatmulAlgo_t& algo,
                        const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor* residual, void* y) {
  const float alpha = 1.0f, beta = residual ? 1.0f : 0.0f;
  const void* c = residual ? static_cast<const void*>(residual->data()) : y;  // C: what beta scales
  return cublasLtMatmul(s.cublas_lt.get(), plan.desc.get(), &alpha, weight.data(), plan.w.get(), x.data(), plan.x.get(),
                        &beta, c, plan.out.get(), y, plan.out.get(), &algo, s.gemm_workspace->data(),
                        s.gemm_workspace->size(), s.stream.get());
}

}  // namespace

// Ranges made ready: a new mask brings new row counts at every level, and each new power-of-two
// range of a shape asks cuBLASLt's heuristic (~0.5 ms of host time apiece), 20-60 ms of a new mask's
// first sparse step (H100, 2026-12-07). When a shape meets the heuristic, this thread asks it for the
// shape's other ranges too, with a cuBLASLt handle of its own (the heuristic is host work: it queues
// nothing on the device), so the next masks find their ranges known. Best effort: a failed lookup
// leaves the range to the calling thread, as before.
struct CudaBackend::State::GemmWarmer {
  GemmWarmer(State& s, std::size_t workspace_bytes) : s_(s), workspace_bytes_(workspace_bytes) {
    cublasLtHandle_t lt{};
    FISEDIT_CUBLAS_CHECK(cublasLtCreate(&lt));
    lt_ = cuda::CublasLtHandle(lt);
    thread_ = std::thread([this] { run(); });
  }
  ~GemmWarmer() {
    {
      const std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  GemmWarmer(const GemmWarmer&) = delete;
  GemmWarmer& operator=(const GemmWarmer&) = delete;

  // A shape (the key's row count is ignored) to make ready, once.
  void add(GemmKey shape) {
    std::get<1>(shape) = 0;
    {
      const std::lock_guard lock(mutex_);
      if (!seen_.insert(shape).second) return;
      jobs_.push_back(shape);
    }
    wake_.notify_one();
  }
  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return jobs_.empty() && !busy_; });
  }

private:
  void run() {
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (stop_) return;
      const GemmKey shape = jobs_.front();
      jobs_.pop_front();
      busy_ = true;
      lock.unlock();
      make_ready(shape);
      lock.lock();
      busy_ = false;
      if (jobs_.empty()) idle_.notify_all();
    }
  }
  void make_ready(GemmKey key) {
    const auto [groups, unused, n, k, epilogue, align_x, align_w, align_out] = key;
    (void)unused;
    for (std::int64_t rows = kWarmRowsFrom; rows <= kWarmRowsTo; rows *= 2) {
      {
        const std::lock_guard lock(mutex_);
        if (stop_) return;
      }
      std::get<1>(key) = rows;
      {
        const std::lock_guard lock(s_.gemm_algos_mutex);
        if (s_.gemm_algos.contains(key)) continue;
      }
      try {
        auto plan = make_plan(lt_.get(), groups, rows, n, k, epilogue, align_x, align_w, align_out, workspace_bytes_);
        if (!plan && epilogue) plan = make_plan(lt_.get(), groups, rows, n, k, false, align_x, align_w, align_out, workspace_bytes_);
        if (!plan) continue;
        const std::lock_guard lock(s_.gemm_algos_mutex);
        s_.gemm_algos.try_emplace(key, State::GemmAlgo{plan->algo, plan->bias_epilogue});
      } catch (const std::exception&) {
        // Left to the calling thread's own lookup.
      }
    }
  }

  State& s_;
  std::size_t workspace_bytes_;
  cuda::CublasLtHandle lt_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<GemmKey> jobs_;
  std::set<GemmKey> seen_;
  bool stop_ = false, busy_ = false;
  std::thread thread_;
};

std::uint64_t CudaBackend::gemm_heuristic_queries() const { return s_->gemm_heuristic_queries; }

void CudaBackend::wait_gemm_ranges_ready() const {
  if (s_->gemm_warmer) s_->gemm_warmer->wait_idle();
}

// x [..., K] (viewed as [M, K]), weight [N, K], bias [N] or empty -> out [..., N] (viewed as [M, N]).
void CudaBackend::linear_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                              Activation act, DeviceTensor& out) {
  gemm(x, weight, bias, act, nullptr, out);
}

// The residual is cuBLASLt's C matrix (beta = 1): D = W x + C, then the bias epilogue.
void CudaBackend::linear_add_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                                  const DeviceTensor& residual, DeviceTensor& out) {
  gemm(x, weight, bias, Activation::none, &residual, out);
}

void CudaBackend::linear_group_impl(const DeviceTensor& x, const DeviceTensor& weights, DeviceTensor& out) {
  gemm(x, weights, DeviceTensor(), Activation::none, nullptr, out, weights.dim(0));
}

void CudaBackend::gemm(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias, Activation act,
                       const DeviceTensor* residual, DeviceTensor& out, std::int64_t groups) {
  const std::int64_t n = weight.dim(-2), k = weight.dim(-1);
  const std::int64_t m = n > 0 ? out.numel() / (n * groups) : 0;
  if (m == 0 || n == 0) return;
  const cudaStream_t stream = s_->stream.get();
  auto* y = out.data_as<std::uint16_t>();
  const auto* b = bias.empty() ? nullptr : bias.data_as<const std::uint16_t>();

  if (k == 0) {  // an empty sum: out = act(bias or 0) (+ residual)
    FISEDIT_CUDA_CHECK(cudaMemsetAsync(y, 0, out.nbytes(), stream));
    if (residual)
      FISEDIT_CUDA_CHECK(kernels::bias_add(y, b, residual->data_as<const std::uint16_t>(), m, n, 1, stream));
    else
      FISEDIT_CUDA_CHECK(kernels::bias_activation(y, b, m, n, kernel_activation(act), stream));
    return;
  }

  if (!s_->gemm_workspace) s_->gemm_workspace = s_->pool->allocate(kGemmWorkspaceBytes);
  const std::size_t workspace_bytes = s_->gemm_workspace->size();
  // The epilogue reads the bias with the kernel's own vector width; an odd view of one goes to bias_act.
  const bool want_epilogue = b != nullptr && alignment(b) >= 16;
  const void* c = residual ? static_cast<const void*>(residual->data()) : y;  // C: what beta scales
  const int align_x = alignment(x.data()), align_w = alignment(weight.data());
  const int align_out = std::min(alignment(y), alignment(c));
  const State::GemmKey key{groups, m, n, k, want_epilogue, align_x, align_w, align_out};
  auto found = s_->gemm_plans.find(key);
  if (found == s_->gemm_plans.end()) {
    const cublasLtHandle_t lt = s_->cublas_lt.get();
    const auto rows_range = static_cast<std::int64_t>(std::bit_ceil(static_cast<std::uint64_t>(m)));
    const State::GemmKey range{groups, rows_range, n, k, want_epilogue, align_x, align_w, align_out};
    std::optional<State::GemmAlgo> known;
    {
      const std::lock_guard lock(s_->gemm_algos_mutex);
      if (const auto it = s_->gemm_algos.find(range); it != s_->gemm_algos.end()) known = it->second;
    }
    std::shared_ptr<GemmPlan> plan;
    if (known)
      plan = make_plan(lt, groups, m, n, k, known->bias_epilogue, align_x, align_w, align_out, workspace_bytes, &known->algo);
    if (!plan) {
      plan = make_plan(lt, groups, m, n, k, want_epilogue, align_x, align_w, align_out, workspace_bytes);
      ++s_->gemm_heuristic_queries;
      if (warm_ranges()) {
        if (!s_->gemm_warmer) s_->gemm_warmer = std::make_shared<State::GemmWarmer>(*s_, workspace_bytes);
        s_->gemm_warmer->add(key);
      }
    }
    if (!plan && want_epilogue) plan = make_plan(lt, groups, m, n, k, false, align_x, align_w, align_out, workspace_bytes);
    if (!plan)
      throw Error(ErrorCode::unsupported, "linear: cuBLASLt offers no fp16 algorithm for [" + std::to_string(m) +
                                              ", " + std::to_string(k) + "] x [" + std::to_string(n) + ", " +
                                              std::to_string(k) + "]^T");
    {
      const std::lock_guard lock(s_->gemm_algos_mutex);
      s_->gemm_algos.try_emplace(range, State::GemmAlgo{plan->algo, plan->bias_epilogue});
    }
    found = s_->gemm_plans.emplace(key, std::move(plan)).first;
  }
  GemmPlan& plan = *found->second;
  if (plan.bias_epilogue) set_desc(plan.desc.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(b));

  // The epilogue adds the bias after beta * C, so D = W x + residual + bias in float, rounded once.
  FISEDIT_CUBLAS_CHECK(run_plan(*s_, plan, plan.algo, x, weight, residual, y));
  const auto* rest_bias = plan.bias_epilogue ? nullptr : b;
  if (rest_bias || act != Activation::none)
    FISEDIT_CUDA_CHECK(kernels::bias_activation(y, rest_bias, m, n, kernel_activation(act), stream));
}

}  // namespace fisedit
