// Convolutions on cuDNN, channels-last: fp16 tensors (NHWC) and filters (KRSC = [Cout, kh, kw, Cin]),
// float32 accumulation, tensor cores. The algorithm is measured once per problem shape
// (cudnnFindConvolutionForwardAlgorithmEx) and cached with its workspace size and math type.
//
// Channel counts are padded to multiples of 8 once, in the prepared weights: cuDNN's tensor-core
// kernels want 16-byte channel vectors, and conv_in (4 latent or 3 image channels) and conv_out (4)
// would otherwise fall to slow or unsupported paths. An input whose channels are padded, whose
// padding is asymmetric (cuDNN pads symmetrically: the VAE encoder's downsamplers pad only right
// and bottom) or whose address is not 16-byte aligned goes through kernels/pad first; an output
// with padded channels is cropped by the same kernel. The bias is added by kernels/bias_act, with a
// residual connection or time embedding in the same pass when asked (conv2d_add).
#include "backend/cuda/cuda_state.h"
#include "backend/cuda/cudnn_graph.h"

#include "bias_act.cuh"
#include "launch.cuh"
#include "pad.cuh"

#include <algorithm>
#include <optional>
#include <cstdlib>
#include <string_view>
#include <limits>
#include <vector>

namespace fisedit {
namespace {

using cuda::BackendDesc;
using cuda::engine_index;
using cuda::make_backend;
using cuda::set_attr;

struct TensorDescDestroy {
  void operator()(cudnnTensorDescriptor_t d) const { cudnnDestroyTensorDescriptor(d); }
};
struct FilterDescDestroy {
  void operator()(cudnnFilterDescriptor_t d) const { cudnnDestroyFilterDescriptor(d); }
};
struct ConvDescDestroy {
  void operator()(cudnnConvolutionDescriptor_t d) const { cudnnDestroyConvolutionDescriptor(d); }
};
using TensorDesc = cuda::UniqueHandle<cudnnTensorDescriptor_t, TensorDescDestroy>;
using FilterDesc = cuda::UniqueHandle<cudnnFilterDescriptor_t, FilterDescDestroy>;
using ConvDesc = cuda::UniqueHandle<cudnnConvolutionDescriptor_t, ConvDescDestroy>;

// Largest workspace an algorithm may use (the VAE decoder's full-resolution convolutions are the
// ones that ask for much).
constexpr std::size_t kMaxWorkspaceBytes = std::size_t{512} << 20;

std::int64_t round_up8(std::int64_t c) { return (c + 7) / 8 * 8; }
using kernels::aligned16;

int as_int(std::int64_t v, const char* what) {
  if (v > std::numeric_limits<int>::max())
    throw Error(ErrorCode::unsupported, std::string("conv2d: ") + what + " is too large for cuDNN");
  return static_cast<int>(v);
}

TensorDesc nhwc_desc(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c) {
  as_int(n * h * w * c, "a tensor of over 2^31 elements");
  cudnnTensorDescriptor_t d{};
  FISEDIT_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  TensorDesc desc(d);
  FISEDIT_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, CUDNN_DATA_HALF, static_cast<int>(n),
                                                 static_cast<int>(c), static_cast<int>(h), static_cast<int>(w)));
  return desc;
}

// Picks the algorithm for a problem: measured (FindEx) normally; the heuristic alone while the stream
// is being captured into a graph, where nothing may synchronise.
CudaBackend::State::ConvChoice choose_algorithm(cudnnHandle_t cudnn, cuda::MemoryPool& pool, cudaStream_t stream,
                                                cudnnTensorDescriptor_t xd, const void* x, cudnnFilterDescriptor_t wd,
                                                const void* w, cudnnConvolutionDescriptor_t cd,
                                                cudnnTensorDescriptor_t yd, void* y) {
  constexpr int kCount = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  cudnnConvolutionFwdAlgoPerf_t perf[kCount]{};
  int count = 0;
  FISEDIT_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(cudnn, xd, wd, cd, yd, kCount, &count, perf));
  const auto usable = [](const cudnnConvolutionFwdAlgoPerf_t& p) {
    return p.status == CUDNN_STATUS_SUCCESS && p.memory <= kMaxWorkspaceBytes;
  };

  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  FISEDIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture == cudaStreamCaptureStatusNone) {
    // Enough workspace for every candidate the heuristic knows, so FindEx can time them all.
    std::size_t bytes = 0;
    for (int i = 0; i < count; ++i)
      if (usable(perf[i])) bytes = std::max(bytes, perf[i].memory);
    std::shared_ptr<DeviceBuffer> workspace;
    if (bytes > 0) {
      try {
        workspace = pool.allocate(bytes);
      } catch (const Error& e) {
        if (e.code() != ErrorCode::out_of_memory) throw;
        bytes = 0;  // time only the algorithms that need no workspace
      }
    }
    int measured = 0;
    cudnnConvolutionFwdAlgoPerf_t timed[kCount]{};
    FISEDIT_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(cudnn, xd, x, wd, w, cd, yd, y, kCount, &measured,
                                                               timed, workspace ? workspace->data() : nullptr, bytes));
    for (int i = 0; i < measured; ++i)  // sorted fastest first
      if (usable(timed[i])) return {static_cast<int>(timed[i].algo), timed[i].memory, static_cast<int>(timed[i].mathType)};
  }
  for (int i = 0; i < count; ++i)  // sorted by expected speed
    if (usable(perf[i])) return {static_cast<int>(perf[i].algo), perf[i].memory, static_cast<int>(perf[i].mathType)};
  throw Error(ErrorCode::unsupported, "conv2d: cuDNN offers no fp16 NHWC algorithm for this convolution");
}

// ---- cuDNN's graph API: an execution plan per problem, made once -------------------------------
// The legacy cudnnConvolutionForward re-derives its execution plan on every call: measured at
// 150-230 us of host time per convolution (H200 host), more than the whole device time of most
// U-Net convolutions, which made a 512x512 step bound by its launches. A finalized plan runs with
// one small variant pack per call.

// Tensor ids of the variant pack.
constexpr std::int64_t kUidX = 1, kUidW = 2, kUidY = 3;

// A channels-last fp16 tensor: cuDNN's dimensions are [N, C, H, W] with NHWC strides (filters:
// [K, C, R, S] with KRSC strides, the same form).
BackendDesc graph_tensor(std::int64_t uid, std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) {
  auto t = make_backend(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const cudnnDataType_t dtype = CUDNN_DATA_HALF;
  const std::int64_t dims[4] = {n, c, h, w}, strides[4] = {h * w * c, 1, w * c, c}, alignment = 16;
  set_attr(t.get(), CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dtype);
  set_attr(t.get(), CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
  set_attr(t.get(), CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
  set_attr(t.get(), CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  set_attr(t.get(), CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(t.get()));
  return t;
}

struct GraphProblem {
  std::int64_t n, hp, wp, cin8, ho, wo, cout8, kh, kw, stride, pad_h, pad_w;
};

// Runs `plan` once on the stream.
void execute_plan(cudnnHandle_t cudnn, cudnnBackendDescriptor_t plan, const void* x, const void* w, void* y,
                  void* workspace) {
  void* const pointers[3] = {const_cast<void*>(x), const_cast<void*>(w), y};
  const std::int64_t uids[3] = {kUidX, kUidW, kUidY};
  FISEDIT_CUDNN_CHECK(cuda::execute(cudnn, plan, uids, pointers, workspace));
}

struct GraphChoice {
  BackendDesc plan;
  std::size_t workspace_bytes = 0;
  std::int64_t engine = -1;  // the engine's global index
  bool timed = false;        // chosen by timing the candidates
};

// The fastest of the heuristic's first candidates that finalize, each timed on the real buffers (as
// FindEx does for the legacy API); untimed, the candidate of engine `known` when one finalizes (the
// engine timed fastest for the same convolution at another size: timing 8 candidates of every layer
// made an edit's first decode of a new crop size 40-130 ms slower than the next); the first that
// finalizes while the stream is being captured. Empty when none finalizes (the caller then takes the
// legacy API).
GraphChoice choose_graph_plan(cudnnHandle_t cudnn, cuda::MemoryPool& pool, cudaStream_t stream, const GraphProblem& g,
                              const void* x, const void* w, void* y, std::int64_t known) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  const auto xt = graph_tensor(kUidX, g.n, g.cin8, g.hp, g.wp);
  const auto wt = graph_tensor(kUidW, g.cout8, g.cin8, g.kh, g.kw);
  const auto yt = graph_tensor(kUidY, g.n, g.cout8, g.ho, g.wo);
  auto conv = make_backend(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const std::int64_t dims = 2, dilation[2] = {1, 1}, stride[2] = {g.stride, g.stride}, pad[2] = {g.pad_h, g.pad_w};
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute);
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dilation);
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride);
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  set_attr(conv.get(), CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(conv.get()));

  auto op = make_backend(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  const float alpha = 1.0f, beta = 0.0f;
  cudnnBackendDescriptor_t xd = xt.get(), wd = wt.get(), yd = yt.get(), cd = conv.get();
  set_attr(op.get(), CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &xd);
  set_attr(op.get(), CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &wd);
  set_attr(op.get(), CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &yd);
  set_attr(op.get(), CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cd);
  set_attr(op.get(), CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha);
  set_attr(op.get(), CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(op.get()));

  auto graph = make_backend(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  cudnnBackendDescriptor_t ops = op.get();
  set_attr(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ops);
  set_attr(graph.get(), CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &cudnn);
  FISEDIT_CUDNN_CHECK(cudnnBackendFinalize(graph.get()));

  constexpr std::int64_t kCandidates = 8;
  const auto configs = cuda::heuristic_configs(graph.get(), kCandidates);
  const auto returned = static_cast<std::int64_t>(configs.size());

  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  FISEDIT_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  // A finalized plan of candidate i (of engine `engine`) and its workspace, or none when it does not
  // take this problem.
  const auto finalize = [&](std::int64_t i, std::int64_t engine) -> std::optional<GraphChoice> {
    auto made = cuda::execution_plan(cudnn, configs[static_cast<std::size_t>(i)].get());
    if (!made.plan) return std::nullopt;  // not for this problem
    if (made.workspace_bytes < 0 || static_cast<std::size_t>(made.workspace_bytes) > kMaxWorkspaceBytes)
      return std::nullopt;
    return GraphChoice{std::move(made.plan), static_cast<std::size_t>(made.workspace_bytes), engine, false};
  };
  if (known >= 0)
    for (std::int64_t i = 0; i < returned; ++i)
      if (engine_index(configs[static_cast<std::size_t>(i)].get()) == known)
        if (auto chosen = finalize(i, known)) return std::move(*chosen);
  GraphChoice best;
  float best_ms = 0.0f;
  for (std::int64_t i = 0; i < returned; ++i) {
    auto candidate = finalize(i, engine_index(configs[static_cast<std::size_t>(i)].get()));
    if (!candidate) continue;
    if (capture != cudaStreamCaptureStatusNone) return std::move(*candidate);
    auto& plan = candidate->plan;
    const std::int64_t workspace = static_cast<std::int64_t>(candidate->workspace_bytes);
    std::shared_ptr<DeviceBuffer> buffer;
    if (workspace > 0) {
      try {
        buffer = pool.allocate(static_cast<std::size_t>(workspace));
      } catch (const Error& e) {
        if (e.code() != ErrorCode::out_of_memory) throw;
        continue;
      }
    }
    void* ws = buffer ? buffer->data() : nullptr;
    execute_plan(cudnn, plan.get(), x, w, y, ws);  // warm-up (module loading)
    auto start = cuda::make_event(cudaEventDefault), stop = cuda::make_event(cudaEventDefault);
    constexpr int kRuns = 3;
    FISEDIT_CUDA_CHECK(cudaEventRecord(start.get(), stream));
    for (int run = 0; run < kRuns; ++run) execute_plan(cudnn, plan.get(), x, w, y, ws);
    FISEDIT_CUDA_CHECK(cudaEventRecord(stop.get(), stream));
    FISEDIT_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float ms = 0.0f;
    FISEDIT_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    if (!best.plan || ms < best_ms) {
      best = std::move(*candidate);
      best.timed = true;
      best_ms = ms;
    }
  }
  return best;
#pragma GCC diagnostic pop
}

// FISEDIT_CONV=legacy keeps every convolution on the legacy API (for comparison).
bool graph_api_wanted() {
  static const bool wanted = [] {
    const char* v = std::getenv("FISEDIT_CONV");
    return !(v && std::string_view(v) == "legacy");
  }();
  return wanted;
}

}  // namespace

struct CudaBackend::State::ConvPlan {
  BackendDesc graph;  // the graph API's execution plan, when one finalized
  std::size_t graph_workspace_bytes = 0;
  // The legacy API, otherwise.
  TensorDesc x, y;
  FilterDesc filter;
  ConvDesc conv;  // with the math type of `choice`
  ConvChoice choice;
};

std::uint64_t CudaBackend::conv_problems_timed() const { return s_->conv_problems_timed; }

// weight [Cout, Cin, kh, kw] (torch) -> fp16 [Cout8, kh, kw, Cin8] with zero padding channels; bias -> fp16 [Cout].
ConvWeight CudaBackend::prepare_conv_weight_impl(const Tensor& weight, const Tensor& bias) {
  const std::int64_t cout = weight.dim(0), cin = weight.dim(1), kh = weight.dim(2), kw = weight.dim(3);
  const std::int64_t cout8 = round_up8(cout), cin8 = round_up8(cin);
  const auto src = weight.to_f32();
  std::vector<float> krsc(static_cast<std::size_t>(cout8 * kh * kw * cin8), 0.0f);
  for (std::int64_t o = 0; o < cout; ++o)
    for (std::int64_t c = 0; c < cin; ++c)
      for (std::int64_t y = 0; y < kh; ++y)
        for (std::int64_t x = 0; x < kw; ++x)
          krsc[static_cast<std::size_t>(((o * kh + y) * kw + x) * cin8 + c)] =
              src[static_cast<std::size_t>(((o * cin + c) * kh + y) * kw + x)];
  ConvWeight w;
  w.out_channels = static_cast<int>(cout);
  w.in_channels = static_cast<int>(cin);
  w.kernel_h = static_cast<int>(kh);
  w.kernel_w = static_cast<int>(kw);
  w.weight = upload(Tensor::from_f32({cout8, kh, kw, cin8}, krsc));
  if (!bias.empty()) w.bias = upload(bias);
  return w;
}

// [N, H, W, Cin] -> [N, Ho, Wo, Cout]
void CudaBackend::conv2d_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p, DeviceTensor& out) {
  convolve(x, w, p, nullptr, 1, out);
}

// The addend joins the bias pass that follows cuDNN's convolution: the residual connection (or time
// embedding) costs no extra read and write of the output.
void CudaBackend::conv2d_add_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p,
                                  const DeviceTensor& addend, std::int64_t repeat, DeviceTensor& out) {
  convolve(x, w, p, &addend, repeat, out);
}

void CudaBackend::convolve(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p, const DeviceTensor* addend,
                           std::int64_t repeat, DeviceTensor& out) {
  const std::int64_t n = x.dim(0), h = x.dim(1), wd = x.dim(2), cin = x.dim(3);
  const std::int64_t ho = out.dim(1), wo = out.dim(2), cout = out.dim(3);
  const std::int64_t cout8 = w.weight.dim(0), kh = w.kernel_h, kw = w.kernel_w, cin8 = w.weight.dim(3);
  if (out.numel() == 0) return;
  // With 8 or 16 (padded) channels on either side cuDNN falls back to slow non-tensor-core engines
  // (measured: 2.6 ms for SD2's conv_out at 96x96 latents on an H100); as a GEMM it is a skinny,
  // memory-bound matrix product.
  if ((cin8 <= 16 || cout8 <= 16) && (kh > 1 || kw > 1)) {
    conv_by_gemm(x, w, p, wo, nullptr, ho * wo, out);
    if (addend)
      FISEDIT_CUDA_CHECK(kernels::bias_add(out.data_as<std::uint16_t>(), nullptr, addend->data_as<const std::uint16_t>(),
                                           n * ho * wo, cout, repeat, s_->stream.get()));
    return;
  }
  const cudaStream_t stream = s_->stream.get();
  const cudnnHandle_t cudnn = s_->cudnn.get();
  FISEDIT_CUDNN_CHECK(cudnnSetStream(cudnn, stream));

  // cuDNN takes the symmetric part of the padding; the rest is explicit.
  const std::int64_t pad_h = std::min(p.pad_top, p.pad_bottom), pad_w = std::min(p.pad_left, p.pad_right);
  const std::int64_t extra_top = p.pad_top - pad_h, extra_left = p.pad_left - pad_w;
  const std::int64_t hp = h + extra_top + (p.pad_bottom - pad_h), wp = wd + extra_left + (p.pad_right - pad_w);
  DeviceTensor input = x;
  if (cin8 != cin || hp != h || wp != wd || !aligned16(x.data())) {
    input = allocate(DType::f16, {n, hp, wp, cin8});
    kernels::PadNhwcArgs pad{x.data_as<const std::uint16_t>(), input.data_as<std::uint16_t>(), n, h, wd, cin, hp, wp,
                             cin8, extra_top, extra_left};
    FISEDIT_CUDA_CHECK(kernels::pad_nhwc(pad, stream));
  }
  DeviceTensor result = out;
  if (cout8 != cout || !aligned16(out.data())) result = allocate(DType::f16, {n, ho, wo, cout8});

  // Descriptors and algorithm are made once per problem: building them (and a key string) on every
  // call cost the host more than launching the convolution.
  const State::ConvKey key{n, hp, wp, cin8, cout8, kh, kw, p.stride, pad_h, pad_w};
  auto found = s_->conv_plans.find(key);
  if (found == s_->conv_plans.end()) {
    auto plan = std::make_shared<State::ConvPlan>();
    if (graph_api_wanted()) {
      const GraphProblem g{n, hp, wp, cin8, ho, wo, cout8, kh, kw, p.stride, pad_h, pad_w};
      const State::ConvFamily family{cin8, cout8, kh, kw, p.stride, pad_h, pad_w};
      const auto engine = s_->conv_engines.find(family);
      try {
        auto chosen = choose_graph_plan(cudnn, *s_->pool, stream, g, input.data(), w.weight.data(), result.data(),
                                        engine == s_->conv_engines.end() ? -1 : engine->second);
        if (chosen.timed) {
          ++s_->conv_problems_timed;
          if (chosen.engine >= 0) s_->conv_engines.try_emplace(family, chosen.engine);
        }
        plan->graph = std::move(chosen.plan);
        plan->graph_workspace_bytes = chosen.workspace_bytes;
      } catch (const Error& e) {
        if (e.code() == ErrorCode::out_of_memory) throw;
        // A problem the graph API refuses outright: the legacy API below takes it.
      }
    }
    plan->x = nhwc_desc(n, hp, wp, cin8);
    plan->y = nhwc_desc(n, ho, wo, cout8);
    cudnnFilterDescriptor_t f{};
    FISEDIT_CUDNN_CHECK(cudnnCreateFilterDescriptor(&f));
    plan->filter = FilterDesc(f);
    FISEDIT_CUDNN_CHECK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_HALF, CUDNN_TENSOR_NHWC, as_int(cout8, "Cout"),
                                                   as_int(cin8, "Cin"), as_int(kh, "kh"), as_int(kw, "kw")));
    cudnnConvolutionDescriptor_t c{};
    FISEDIT_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&c));
    plan->conv = ConvDesc(c);
    FISEDIT_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(c, as_int(pad_h, "padding"), as_int(pad_w, "padding"),
                                                        p.stride, p.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                        CUDNN_DATA_FLOAT));
    FISEDIT_CUDNN_CHECK(cudnnSetConvolutionMathType(c, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION));
    int on = 0, oc = 0, oh = 0, ow = 0;
    FISEDIT_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(c, plan->x.get(), f, &on, &oc, &oh, &ow));
    if (on != n || oc != cout8 || oh != ho || ow != wo)
      throw Error(ErrorCode::device, "conv2d: cuDNN's output shape differs from the backend's");
    if (!plan->graph) {
      plan->choice = choose_algorithm(cudnn, *s_->pool, stream, plan->x.get(), input.data(), f, w.weight.data(), c,
                                      plan->y.get(), result.data());
      FISEDIT_CUDNN_CHECK(cudnnSetConvolutionMathType(c, static_cast<cudnnMathType_t>(plan->choice.math_type)));
    }
    found = s_->conv_plans.emplace(key, std::move(plan)).first;
  }
  const State::ConvPlan& plan = *found->second;
  const State::ConvChoice& choice = plan.choice;
  const std::size_t workspace_bytes = plan.graph ? plan.graph_workspace_bytes : choice.workspace_bytes;
  if (workspace_bytes > 0 && (!s_->conv_workspace || s_->conv_workspace->size() < workspace_bytes)) {
    s_->conv_workspace.reset();  // back to the pool first, so growing never holds both
    s_->conv_workspace = s_->pool->allocate(workspace_bytes);
  }
  const float alpha = 1.0f, beta = 0.0f;
  if (plan.graph)
    execute_plan(cudnn, plan.graph.get(), input.data(), w.weight.data(), result.data(),
                 workspace_bytes ? s_->conv_workspace->data() : nullptr);
  else
    FISEDIT_CUDNN_CHECK(cudnnConvolutionForward(cudnn, &alpha, plan.x.get(), input.data(), plan.filter.get(),
                                              w.weight.data(), plan.conv.get(),
                                              static_cast<cudnnConvolutionFwdAlgo_t>(choice.algorithm),
                                              choice.workspace_bytes ? s_->conv_workspace->data() : nullptr,
                                              choice.workspace_bytes, &beta, plan.y.get(), result.data()));

  if (result.data() != out.data()) {  // drop the padding channels
    kernels::PadNhwcArgs crop{result.data_as<const std::uint16_t>(), out.data_as<std::uint16_t>(), n, ho, wo, cout8,
                              ho, wo, cout, 0, 0};
    FISEDIT_CUDA_CHECK(kernels::pad_nhwc(crop, stream));
  }
  const auto* bias = w.bias.empty() ? nullptr : w.bias.data_as<const std::uint16_t>();
  if (addend)
    FISEDIT_CUDA_CHECK(kernels::bias_add(out.data_as<std::uint16_t>(), bias, addend->data_as<const std::uint16_t>(),
                                         n * ho * wo, cout, repeat, stream));
  else if (bias)
    FISEDIT_CUDA_CHECK(kernels::bias_activation(out.data_as<std::uint16_t>(), bias, n * ho * wo, cout,
                                                kernels::BiasActivation::none, stream));
}

}  // namespace fisedit
