// Element-wise ops and data movement on the CUDA backend: each op is one launch of a kernel from
// kernels/elementwise.cuh or kernels/layout.cuh on the backend's stream. Inputs arrive validated and
// fp16 (I32 for embedding ids), see backend.h.
#include "backend/cuda/cuda_state.h"

#include "core/error.h"
#include "elementwise.cuh"
#include "layout.cuh"

#include <cstdint>

namespace fisedit {
namespace {

const std::uint16_t* halves(const DeviceTensor& t) { return t.data_as<const std::uint16_t>(); }
std::uint16_t* halves(DeviceTensor& t) { return t.data_as<std::uint16_t>(); }
std::size_t count(const DeviceTensor& t) { return static_cast<std::size_t>(t.numel()); }

}  // namespace

// [...] -> [...]
void CudaBackend::activation_impl(const DeviceTensor& x, Activation act, DeviceTensor& out) {
  const cudaStream_t stream = s_->stream.get();
  switch (act) {
    case Activation::none:
      FISEDIT_CUDA_CHECK(cudaMemcpyAsync(out.data(), x.data(), x.nbytes(), cudaMemcpyDeviceToDevice, stream));
      return;
    case Activation::silu:
      FISEDIT_CUDA_CHECK(kernels::unary(kernels::UnaryOp::silu, halves(x), halves(out), count(x), stream));
      return;
    case Activation::gelu:
      FISEDIT_CUDA_CHECK(kernels::unary(kernels::UnaryOp::gelu, halves(x), halves(out), count(x), stream));
      return;
    case Activation::quick_gelu:
      FISEDIT_CUDA_CHECK(kernels::unary(kernels::UnaryOp::quick_gelu, halves(x), halves(out), count(x), stream));
      return;
  }
}

// [..., 2F] -> [..., F]
void CudaBackend::geglu_impl(const DeviceTensor& x, DeviceTensor& out) {
  const auto f = static_cast<std::size_t>(out.dim(-1));
  const std::size_t rows = f ? count(out) / f : 0;
  FISEDIT_CUDA_CHECK(kernels::geglu(halves(x), halves(out), rows, f, s_->stream.get()));
}

// a [outer, repeat, inner] op b [outer, inner] -> [outer, repeat, inner]
void CudaBackend::binary_impl(BinaryOp op, const DeviceTensor& a, const DeviceTensor& b, Broadcast shape,
                              DeviceTensor& out) {
  const auto kind = op == BinaryOp::add ? kernels::BinaryOp::add : kernels::BinaryOp::mul;
  FISEDIT_CUDA_CHECK(kernels::binary(kind, halves(a), halves(b), halves(out), static_cast<std::size_t>(shape.outer),
                                     static_cast<std::size_t>(shape.repeat), static_cast<std::size_t>(shape.inner),
                                     s_->stream.get()));
}

// [...] -> [...] * s
void CudaBackend::scale_impl(const DeviceTensor& x, float s, DeviceTensor& out) {
  FISEDIT_CUDA_CHECK(kernels::scale(halves(x), halves(out), count(x), s, s_->stream.get()));
}

// [N, H, W, C] -> [N, Ho, Wo, C]
void CudaBackend::upsample_nearest_impl(const DeviceTensor& x, DeviceTensor& out) {
  FISEDIT_CUDA_CHECK(kernels::upsample_nearest(halves(x), halves(out), x.dim(0), x.dim(1), x.dim(2), x.dim(3),
                                               out.dim(1), out.dim(2), s_->stream.get()));
}

// [..., Ca], [..., Cb] -> [..., Ca + Cb]: two strided copies into the two channel ranges.
void CudaBackend::concat_channels_impl(const DeviceTensor& a, const DeviceTensor& b, DeviceTensor& out) {
  const std::int64_t ca = a.dim(-1), cb = b.dim(-1), c = ca + cb;
  const std::int64_t rows = c ? out.numel() / c : 0;
  const cudaStream_t stream = s_->stream.get();
  FISEDIT_CUDA_CHECK(kernels::copy_channels(halves(a), ca, halves(out), c, rows, ca, stream));
  FISEDIT_CUDA_CHECK(kernels::copy_channels(halves(b), cb, halves(out) + ca, c, rows, cb, stream));
}

// [..., C] -> [..., begin : begin + width]
void CudaBackend::slice_channels_impl(const DeviceTensor& x, std::int64_t begin, DeviceTensor& out) {
  const std::int64_t c = x.dim(-1), width = out.dim(-1);
  const std::int64_t rows = width ? out.numel() / width : 0;
  FISEDIT_CUDA_CHECK(kernels::copy_channels(halves(x) + begin, c, halves(out), width, rows, width, s_->stream.get()));
}

// table [V, C], ids I32 [...] -> [..., C]. Bad ids are found on the device and reported here, which
// costs a synchronisation: embedding runs once per prompt (text encoder), never in the step loop.
void CudaBackend::embedding_impl(const DeviceTensor& table, const DeviceTensor& ids, DeviceTensor& out) {
  const std::int64_t vocab = table.dim(0), c = table.dim(1), n = ids.numel();
  if (n == 0) return;
  const cudaStream_t stream = s_->stream.get();
  const auto flag = allocate(DType::i32, {1});
  auto* first_bad = flag.data_as<std::uint32_t>();
  FISEDIT_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xff, sizeof(std::uint32_t), stream));
  FISEDIT_CUDA_CHECK(kernels::embedding(halves(table), vocab, c, ids.data_as<const std::int32_t>(), n, halves(out),
                                        first_bad, stream));
  std::uint32_t position = 0;
  FISEDIT_CUDA_CHECK(cudaMemcpyAsync(&position, first_bad, sizeof position, cudaMemcpyDeviceToHost, stream));
  synchronize();
  if (position == 0xffffffffu) return;
  std::int32_t id = 0;
  FISEDIT_CUDA_CHECK(cudaMemcpyAsync(&id, ids.data_as<const std::int32_t>() + position, sizeof id,
                                     cudaMemcpyDeviceToHost, stream));
  synchronize();
  throw Error(ErrorCode::invalid_argument, "embedding: id " + std::to_string(id) + " at position " +
                                               std::to_string(position) + " is outside the table of " +
                                               std::to_string(vocab) + " entries");
}

// [N, C, H, W] <-> [N, H, W, C]: per batch item a [C, P] <-> [P, C] transpose (P = H * W).
void CudaBackend::convert_layout_impl(const DeviceTensor& x, bool to_nhwc, DeviceTensor& out) {
  const std::int64_t n = x.dim(0), c = to_nhwc ? x.dim(1) : x.dim(3);
  const std::int64_t p = n * c != 0 ? x.numel() / (n * c) : 0;
  FISEDIT_CUDA_CHECK(kernels::transpose(halves(x), halves(out), n, to_nhwc ? c : p, to_nhwc ? p : c,
                                        s_->stream.get()));
}

}  // namespace fisedit
