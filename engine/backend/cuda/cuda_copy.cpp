// The copy streams: copy_async batches between device and pinned host memory beside the computation
// (the activation cache's spill and prefetch, edit/cache_store.h), ordered by events only.
//
// Ordering: a batch starts after everything queued on the compute stream so far (an event recorded
// there, waited on by the copy stream: one for copies to the host, one for the rest), and ends with an
// event of its own that wait() puts in the compute stream's way. The host never waits, except in
// synchronize_copies() and teardown.
// Lifetime: a batch holds the tensors it reads and writes until its event has passed, because the
// memory pools hand a freed block to the next allocation at once, and that allocation's user runs on
// the compute stream, which knows nothing of the copy stream's order.
#include "backend/cuda/cuda_state.h"

#include <algorithm>
#include <limits>

namespace fisedit {

DeviceTensor CudaBackend::allocate_host(DType dtype, Shape shape) {
  std::size_t elements = 1;
  for (auto d : shape) {
    if (d < 0) throw Error(ErrorCode::invalid_argument, "allocate_host: negative dimension in " + shape_to_string(shape));
    if (d > 0 && elements > std::numeric_limits<std::size_t>::max() / 16 / static_cast<std::size_t>(d))
      throw Error(ErrorCode::out_of_memory, "allocate_host: " + shape_to_string(shape) + " is too large");
    elements *= static_cast<std::size_t>(d);
  }
  auto buffer = s_->pinned_pool->allocate(elements * dtype_size(dtype));
  return DeviceTensor(std::move(buffer), 0, dtype, std::move(shape));
}

std::optional<std::size_t> CudaBackend::host_bytes_in_use() const { return s_->pinned_pool->bytes_in_use(); }

cudaStream_t CudaBackend::copy_stream() const { return s_->copy_stream.get(); }

cuda::MemoryPool& CudaBackend::pinned_pool() const { return *s_->pinned_pool; }

void CudaBackend::retire_copies() {
  auto& flight = s_->copies_in_flight;
  while (!flight.empty()) {
    const cudaError_t status = cudaEventQuery(flight.front().done.get());
    if (status == cudaErrorNotReady) {
      cudaGetLastError();  // not an error: the batch is still running
      return;
    }
    FISEDIT_CUDA_CHECK(status);
    s_->retired_ticket = flight.front().ticket;
    s_->spare_events.push_back(std::move(flight.front().done));
    flight.pop_front();
  }
}

void CudaBackend::copy_async_impl(std::span<const TensorCopy> copies, std::uint64_t ticket) {
  retire_copies();
  // Spills (everything to host memory) and prefetches go on streams of their own, so that an edit's
  // spill of the step it just computed does not hold up the prefetch of the next one: the bus carries
  // both directions at once, on separate copy engines.
  const bool to_host = std::all_of(copies.begin(), copies.end(), [](const TensorCopy& c) { return c.dst.host_resident(); });
  const cudaStream_t copy = to_host ? s_->spill_stream.get() : s_->copy_stream.get();
  FISEDIT_CUDA_CHECK(cudaEventRecord(s_->compute_mark.get(), s_->stream.get()));
  FISEDIT_CUDA_CHECK(cudaStreamWaitEvent(copy, s_->compute_mark.get(), 0));

  State::CopyBatch batch;
  batch.ticket = ticket;
  batch.to_host = to_host;
  batch.held.reserve(2 * copies.size());
  // Copies that continue each other on both sides within the same two buffers (a spilled step's
  // tensors laid out in one block, staged into one block in the same layout) go as one transfer,
  // alignment gaps included: a few large copies reach the bus's bandwidth, hundreds of small ones do
  // not. The gaps lie inside both buffers, so copying them is harmless.
  constexpr std::size_t kMaxGap = 4096;
  const DeviceBuffer *src_buffer = nullptr, *dst_buffer = nullptr;
  std::size_t src_begin = 0, dst_begin = 0, bytes = 0;
  const TensorCopy* first = nullptr;
  const auto flush = [&] {
    if (first && bytes)
      FISEDIT_CUDA_CHECK(cudaMemcpyAsync(first->dst.data(), first->src.data(), bytes, cudaMemcpyDefault, copy));
    first = nullptr;
    bytes = 0;
  };
  for (const auto& c : copies) {
    const std::size_t n = c.src.nbytes();
    const bool continues = first && c.src.buffer() == src_buffer && c.dst.buffer() == dst_buffer &&
                           c.src.offset() >= src_begin + bytes && c.src.offset() - (src_begin + bytes) <= kMaxGap &&
                           c.dst.offset() >= dst_begin && c.dst.offset() - dst_begin == c.src.offset() - src_begin;
    if (continues) {
      bytes = c.src.offset() - src_begin + n;
    } else {
      flush();
      first = &c;
      src_buffer = c.src.buffer();
      dst_buffer = c.dst.buffer();
      src_begin = c.src.offset();
      dst_begin = c.dst.offset();
      bytes = n;
    }
    batch.held.push_back(c.src);
    batch.held.push_back(c.dst);
  }
  flush();

  if (!s_->spare_events.empty()) {
    batch.done = std::move(s_->spare_events.back());
    s_->spare_events.pop_back();
  } else {
    batch.done = cuda::make_event();
  }
  FISEDIT_CUDA_CHECK(cudaEventRecord(batch.done.get(), copy));
  s_->copies_in_flight.push_back(std::move(batch));
}

void CudaBackend::wait_copies_impl(std::uint64_t ticket) {
  retire_copies();
  if (ticket <= s_->retired_ticket) return;  // done already
  // This batch only (and, by stream order, those before it in the same direction): a prefetch must not
  // make the computation wait for a spill queued before it, which it does not need.
  for (const auto& batch : s_->copies_in_flight)
    if (batch.ticket == ticket) {
      FISEDIT_CUDA_CHECK(cudaStreamWaitEvent(s_->stream.get(), batch.done.get(), 0));
      return;
    }
  // Tickets come from copy_async only, and retire in order: one neither retired nor in flight is a bug.
  throw Error(ErrorCode::device, "wait: unknown copy ticket " + std::to_string(ticket));
}

void CudaBackend::wait_copies_on_host_impl(std::uint64_t ticket) {
  retire_copies();
  if (ticket <= s_->retired_ticket) return;
  for (const auto& batch : s_->copies_in_flight)
    if (batch.ticket == ticket) {
      FISEDIT_CUDA_CHECK(cudaEventSynchronize(batch.done.get()));
      retire_copies();
      return;
    }
  throw Error(ErrorCode::device, "wait_host: unknown copy ticket " + std::to_string(ticket));
}

void CudaBackend::synchronize_copies_impl() {
  FISEDIT_CUDA_CHECK(cudaStreamSynchronize(s_->copy_stream.get()));
  FISEDIT_CUDA_CHECK(cudaStreamSynchronize(s_->spill_stream.get()));
  retire_copies();
}

}  // namespace fisedit
