// The checks every backend shares: shapes and dtypes of op inputs, output shapes, and allocation.
#include "backend/backend.h"

#include "core/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cassert>
#include <limits>
#include <utility>

namespace fisedit {

DeviceTensor::DeviceTensor(std::shared_ptr<DeviceBuffer> buffer, std::size_t offset, DType dtype, Shape shape)
    : buffer_(std::move(buffer)), offset_(offset), dtype_(dtype), shape_(std::move(shape)) {
  assert(!buffer_ || offset_ + nbytes() <= buffer_->size());
}

std::int64_t DeviceTensor::dim(int i) const {
  const int r = rank();
  assert(-r <= i && i < r);
  return shape_[static_cast<std::size_t>(i < 0 ? i + r : i)];
}

DeviceTensor DeviceTensor::view(std::size_t offset, DType dtype, Shape shape) const {
  const std::size_t bytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  if (!buffer_ || offset > buffer_->size() || bytes > buffer_->size() - offset)
    throw Error(ErrorCode::invalid_argument, "a view of " + std::to_string(bytes) + " bytes at offset " +
                                                 std::to_string(offset) + " does not fit its buffer");
  return DeviceTensor(buffer_, offset, dtype, std::move(shape));
}

DeviceTensor DeviceTensor::reshaped(Shape shape) const {
  if (shape_numel(shape) != numel())
    throw Error(ErrorCode::invalid_argument,
                "cannot reshape " + shape_to_string(shape_) + " to " + shape_to_string(shape));
  return DeviceTensor(buffer_, offset_, dtype_, std::move(shape));
}

DeviceTensor DeviceTensor::slice_rows(std::int64_t begin, std::int64_t end) const {
  assert(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0]);
  Shape s = shape_;
  s[0] = end - begin;
  const std::size_t row_bytes = shape_[0] ? nbytes() / static_cast<std::size_t>(shape_[0]) : 0;
  return DeviceTensor(buffer_, offset_ + static_cast<std::size_t>(begin) * row_bytes, dtype_, std::move(s));
}

namespace {

// Builds the message only when the check fails: every op checks its arguments on every call, and
// formatting shapes eagerly cost the host microseconds per op, in step loops bound by their launches.
#define FISEDIT_REQUIRE(ok, op, what)                                                                 \
  do {                                                                                        \
    if (!(ok)) throw Error(ErrorCode::invalid_argument, std::string(op) + ": " + (what));  \
  } while (0)

std::string shapes(const DeviceTensor& a) { return shape_to_string(a.shape()); }

Shape with_last(Shape s, std::int64_t last) {
  s.back() = last;
  return s;
}

// Ops read device memory only: a spilled cache tensor must be copied back first (copy_async).
void check_device(const char* op, const DeviceTensor& t, const char* what) {
  FISEDIT_REQUIRE(!t.host_resident(), op, std::string(what) + " is in host memory (copy it to the device first)");
}

// Op inputs must be present and of the backend's activation dtype (weights too: upload converts them).
void check_act(const char* op, const DeviceTensor& t, const char* what, DType act) {
  if (t.empty()) FISEDIT_REQUIRE(false, op, std::string(what) + " is missing");
  check_device(op, t, what);
  FISEDIT_REQUIRE(t.dtype() == act, op, std::string(what) + " has dtype " + std::string(dtype_name(t.dtype())) +
                                    ", not the backend's activation dtype " + std::string(dtype_name(act)));
}

}  // namespace

namespace {
double host_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

// Times the outermost op while profiling is on: on the device (profile_begin/end) and on the host.
class OpScope {
public:
  OpScope(Backend& b, const char* op) : b_(b), op_(op) {
    if (b_.profiling_ && b_.op_depth_++ == 0) {
      b_.call_begin_ms_ = host_ms();
      b_.profile_begin();
    }
  }
  ~OpScope() {
    if (b_.profiling_ && --b_.op_depth_ == 0) {
      b_.profile_end(op_);
      b_.call_host_ms_[op_] += host_ms() - b_.call_begin_ms_;
    }
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

private:
  Backend& b_;
  const char* op_;
};

void Backend::set_profiling(bool on) {
  synchronize();
  profiling_ = on;
  op_depth_ = 0;
}

std::vector<Backend::OpTime> Backend::profile_report() {
  synchronize();
  auto times = profile_collect();
  for (auto& t : times) t.host_ms = call_host_ms_[t.op];
  call_host_ms_.clear();
  std::sort(times.begin(), times.end(), [](const OpTime& a, const OpTime& b) { return a.total_ms > b.total_ms; });
  return times;
}

void Backend::profile_begin() {
  synchronize();
  host_begin_ms_ = host_ms();
}

void Backend::profile_end(const char* op) {
  synchronize();
  auto& t = host_times_[op];
  t.op = op;
  ++t.calls;
  t.total_ms += host_ms() - host_begin_ms_;
}

void Backend::set_marking(bool on) {
  if (!on) take_marks();
  marking_ = on;
}

std::vector<Backend::Mark> Backend::take_marks() {
  auto marks = take_marks_impl();
  for (std::size_t i = marks.size(); i-- > 1;) marks[i].ms -= marks[i - 1].ms;
  if (!marks.empty()) marks.front().ms = 0;
  return marks;
}

void Backend::mark_impl(const char* name) { host_marks_.push_back({name, host_ms()}); }

std::vector<Backend::Mark> Backend::take_marks_impl() { return std::exchange(host_marks_, {}); }

std::vector<Backend::OpTime> Backend::profile_collect() {
  std::vector<OpTime> out;
  for (auto& [name, t] : host_times_) out.push_back(t);
  host_times_.clear();
  return out;
}

DeviceTensor Backend::upload(const Tensor& host) {
  const DType dtype = dtype_is_float(host.dtype()) ? activation_dtype() : DType::i32;
  if (host.dtype() == DType::boolean)
    throw Error(ErrorCode::invalid_argument, "upload: boolean tensors are not supported");
  auto out = allocate(dtype, host.shape());
  upload_impl(host, out);
  return out;
}

Tensor Backend::download(const DeviceTensor& t) {
  std::vector<float> values(static_cast<std::size_t>(t.numel()));
  if (!values.empty()) {
    if (t.host_resident()) {  // through the device, where the conversion to float32 runs
      const TensorCopy copy{t, allocate(t.dtype(), t.shape())};
      wait(copy_async(std::span(&copy, 1)));
      download_impl(copy.dst, values);
    } else {
      download_impl(t, values);
    }
  }
  return Tensor::from_f32(t.shape(), values);
}

std::optional<std::vector<std::uint8_t>> Backend::download_rgb8(const DeviceTensor& t) {
  FISEDIT_REQUIRE(!t.empty() && dtype_is_float(t.dtype()), "download_rgb8", "needs a float tensor");
  check_device("download_rgb8", t, "the image");
  std::vector<std::uint8_t> out(static_cast<std::size_t>(t.numel()));
  if (!download_rgb8_impl(t, out)) return std::nullopt;
  return out;
}

bool Backend::download_rgb8_impl(const DeviceTensor& t, std::span<std::uint8_t> out) {
  std::vector<float> values(out.size());
  download_impl(t, values);
  bool finite = true;
  for (const float v : values) finite &= std::isfinite(v);
  if (!finite) return false;
  // Adding and subtracting 1.5 * 2^23 rounds a float in [0, 2^22) to the nearest integer, ties to even,
  // exactly as nearbyint does (checked for every float in [0, 255]), at a third of its cost.
  constexpr float kRound = 12582912.0f;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float v = 255.0f * std::clamp(values[i] / 2.0f + 0.5f, 0.0f, 1.0f);
    out[i] = static_cast<std::uint8_t>((v + kRound) - kRound);
  }
  return true;
}

std::unique_ptr<Backend::Recording> Backend::record(const std::function<void()>& body, std::string* why) {
  if (profiling_) {  // the profiler's events cannot live inside a recording
    if (why) *why = "profiling is on";
    return nullptr;
  }
  return record_impl(body, why);
}

std::unique_ptr<Backend::Recording> Backend::record_impl(const std::function<void()>&, std::string* why) {
  if (why) *why = name() + " cannot record work";
  return nullptr;
}

void Backend::copy_into(std::span<const TensorCopy> copies) {
  const OpScope scope(*this, "copy_into");
  for (const auto& c : copies) {
    FISEDIT_REQUIRE(!c.src.empty() && !c.dst.empty(), "copy_into", "a source or destination is missing");
    check_device("copy_into", c.src, "a source");
    check_device("copy_into", c.dst, "a destination");
    FISEDIT_REQUIRE(c.src.dtype() == c.dst.dtype() && c.src.shape() == c.dst.shape(), "copy_into",
                    "source " + shapes(c.src) + " " + std::string(dtype_name(c.src.dtype())) + " and destination " +
                        shapes(c.dst) + " " + std::string(dtype_name(c.dst.dtype())) + " differ");
  }
  if (!copies.empty()) copy_into_impl(copies);
}

void Backend::copy_into_impl(std::span<const TensorCopy> copies) {
  for (const auto& c : copies) {
    DeviceTensor dst = c.dst;
    copy_impl(c.src, dst);
  }
}

Backend::CopyFence Backend::copy_async(std::span<const TensorCopy> copies) {
  std::uint64_t bytes = 0;
  for (const auto& c : copies) {
    FISEDIT_REQUIRE(!c.src.empty() && !c.dst.empty(), "copy_async", "a source or destination is missing");
    FISEDIT_REQUIRE(c.src.dtype() == c.dst.dtype() && c.src.shape() == c.dst.shape(), "copy_async",
                    "source " + shapes(c.src) + " " + std::string(dtype_name(c.src.dtype())) + " and destination " +
                        shapes(c.dst) + " " + std::string(dtype_name(c.dst.dtype())) + " differ");
    bytes += c.src.nbytes();
  }
  if (copies.empty()) return {};
  const std::uint64_t ticket = ++last_ticket_;
  copy_async_impl(copies, ticket);
  ++copy_counters_.calls;
  copy_counters_.bytes += bytes;
  return CopyFence(ticket);
}

void Backend::wait(const CopyFence& fence) {
  if (!fence.empty()) wait_copies_impl(fence.ticket_);
}

void Backend::wait_host(const CopyFence& fence) {
  if (!fence.empty()) wait_copies_on_host_impl(fence.ticket_);
}

void Backend::synchronize_copies() { synchronize_copies_impl(); }

void Backend::copy_async_impl(std::span<const TensorCopy> copies, std::uint64_t ticket) {
  (void)ticket;
  for (const auto& c : copies) {
    DeviceTensor dst = c.dst;
    copy_impl(c.src, dst);
  }
}

ConvWeight Backend::prepare_conv_weight(const Tensor& weight, const Tensor& bias) {
  const char* op = "prepare_conv_weight";
  FISEDIT_REQUIRE(weight.rank() == 4 && dtype_is_float(weight.dtype()), op,
          "weight must be a float [Cout, Cin, kh, kw] tensor, got " + shape_to_string(weight.shape()));
  FISEDIT_REQUIRE(bias.empty() || (bias.rank() == 1 && bias.dim(0) == weight.dim(0) && dtype_is_float(bias.dtype())), op,
          "bias " + shape_to_string(bias.shape()) + " does not match weight " + shape_to_string(weight.shape()));
  return prepare_conv_weight_impl(weight, bias);
}

DeviceTensor Backend::linear(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                             Activation act) {
  const OpScope scope(*this, "linear");
  check_act("linear", x, "x", activation_dtype());
  check_act("linear", weight, "weight", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 1 && weight.rank() == 2 && x.dim(-1) == weight.dim(1), "linear",
          "x " + shapes(x) + " does not match weight " + shapes(weight) + " ([N, K])");
  if (!bias.empty()) {
    check_act("linear", bias, "bias", activation_dtype());
    FISEDIT_REQUIRE(bias.rank() == 1 && bias.dim(0) == weight.dim(0), "linear",
            "bias " + shapes(bias) + " does not match weight " + shapes(weight));
  }
  auto out = allocate(with_last(x.shape(), weight.dim(0)));
  linear_impl(x, weight, bias, act, out);
  return out;
}

DeviceTensor Backend::linear_group(const DeviceTensor& x, const DeviceTensor& weights) {
  const OpScope scope(*this, "linear_group");
  check_act("linear_group", x, "x", activation_dtype());
  check_act("linear_group", weights, "weights", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 1 && weights.rank() == 3 && x.dim(-1) == weights.dim(2), "linear_group",
                  "x " + shapes(x) + " does not match weights " + shapes(weights) + " ([G, N, K])");
  Shape shape = with_last(x.shape(), weights.dim(1));
  shape.insert(shape.begin(), weights.dim(0));
  auto out = allocate(std::move(shape));
  linear_group_impl(x, weights, out);
  return out;
}

void Backend::linear_group_impl(const DeviceTensor& x, const DeviceTensor& weights, DeviceTensor& out) {
  const Shape one = with_last(x.shape(), weights.dim(1));
  for (std::int64_t g = 0; g < weights.dim(0); ++g) {
    auto slice = out.slice_rows(g, g + 1).reshaped(one);
    linear_impl(x, weights.slice_rows(g, g + 1).reshaped({weights.dim(1), weights.dim(2)}), DeviceTensor(),
                Activation::none, slice);
  }
}

DeviceTensor Backend::linear_add(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                                 const DeviceTensor& residual) {
  const OpScope scope(*this, "linear+add");
  check_act("linear_add", x, "x", activation_dtype());
  check_act("linear_add", weight, "weight", activation_dtype());
  check_act("linear_add", residual, "residual", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 1 && weight.rank() == 2 && x.dim(-1) == weight.dim(1), "linear_add",
          "x " + shapes(x) + " does not match weight " + shapes(weight) + " ([N, K])");
  if (!bias.empty()) {
    check_act("linear_add", bias, "bias", activation_dtype());
    FISEDIT_REQUIRE(bias.rank() == 1 && bias.dim(0) == weight.dim(0), "linear_add",
            "bias " + shapes(bias) + " does not match weight " + shapes(weight));
  }
  const Shape out_shape = with_last(x.shape(), weight.dim(0));
  FISEDIT_REQUIRE(residual.shape() == out_shape, "linear_add",
          "residual " + shapes(residual) + " is not the output's shape " + shape_to_string(out_shape));
  auto out = allocate(out_shape);
  linear_add_impl(x, weight, bias, residual, out);
  return out;
}

void Backend::linear_add_impl(const DeviceTensor& x, const DeviceTensor& weight, const DeviceTensor& bias,
                              const DeviceTensor& residual, DeviceTensor& out) {
  linear_impl(x, weight, bias, Activation::none, out);
  const std::int64_t c = out.dim(-1);
  if (out.numel() > 0) binary_impl(BinaryOp::add, out, residual, Broadcast{out.numel() / c, 1, c}, out);
}

namespace {

// The output size of a convolution, after checking its arguments.
// `appended` (or null): channels after x's, as conv2d_at takes them.
std::pair<std::int64_t, std::int64_t> conv_output_size(const char* op, const DeviceTensor& x, const ConvWeight& w,
                                                       const Conv2dParams& p, DType act,
                                                       const DeviceTensor* appended = nullptr) {
  check_act(op, x, "x", act);
  FISEDIT_REQUIRE(!w.weight.empty(), op, "weights were not prepared (prepare_conv_weight)");
  if (appended) {
    check_act(op, *appended, "the appended input", act);
    FISEDIT_REQUIRE(x.rank() == 4 && appended->rank() == 4 && appended->dim(0) == x.dim(0) &&
                        appended->dim(1) == x.dim(1) && appended->dim(2) == x.dim(2) &&
                        x.dim(3) + appended->dim(3) == w.in_channels,
                    op, "x " + shapes(x) + " and the appended input " + shapes(*appended) + " are not [N, H, W, C] and [N, H, W, " +
                            std::to_string(w.in_channels) + " - C]");
  } else {
    FISEDIT_REQUIRE(x.rank() == 4 && x.dim(3) == w.in_channels, op,
                    "x " + shapes(x) + " is not [N, H, W, " + std::to_string(w.in_channels) + "]");
  }
  FISEDIT_REQUIRE(p.stride >= 1 && p.pad_top >= 0 && p.pad_bottom >= 0 && p.pad_left >= 0 && p.pad_right >= 0, op,
          "stride must be positive and padding non-negative");
  const std::int64_t hp = x.dim(1) + p.pad_top + p.pad_bottom, wp = x.dim(2) + p.pad_left + p.pad_right;
  FISEDIT_REQUIRE(hp >= w.kernel_h && wp >= w.kernel_w, op, "input " + shapes(x) + " is smaller than the kernel after padding");
  return {(hp - w.kernel_h) / p.stride + 1, (wp - w.kernel_w) / p.stride + 1};
}

void check_positions(const char* op, const DeviceTensor& positions, std::int64_t limit) {
  FISEDIT_REQUIRE(!positions.empty() && positions.dtype() == DType::i32 && positions.rank() == 1, op,
          "positions must be an I32 [P] tensor (upload integer indices)");
  check_device(op, positions, "positions");
  FISEDIT_REQUIRE(positions.dim(0) <= limit, op, std::to_string(positions.dim(0)) + " positions for " + std::to_string(limit) + " places");
}

// A GroupNorm's parameters for N images of c channels, and its given statistics (if any).
void check_group_norm(const char* op, std::int64_t n, std::int64_t c, const DeviceTensor& gamma,
                      const DeviceTensor& beta, int groups, const GroupNormStats* stats) {
  FISEDIT_REQUIRE(groups >= 1 && c % groups == 0, op,
          std::to_string(c) + " channels do not split into " + std::to_string(groups) + " groups");
  FISEDIT_REQUIRE(gamma.shape() == Shape{c} && beta.shape() == Shape{c}, op,
          "gamma " + shapes(gamma) + " / beta " + shapes(beta) + " do not match " + std::to_string(c) + " channels");
  if (!stats) return;
  FISEDIT_REQUIRE(!stats->mean.empty() && !stats->var.empty(), op, "given statistics are missing");
  check_device(op, stats->mean, "the given mean");
  check_device(op, stats->var, "the given variance");
  FISEDIT_REQUIRE((stats->mean.dtype() == DType::f32 && stats->var.dtype() == DType::f32 &&
                   stats->mean.shape() == Shape{n, groups} && stats->var.shape() == Shape{n, groups}),
          op, "given statistics are not float32 [N, groups] = [" + std::to_string(n) + ", " +
                  std::to_string(groups) + "]");
}

}  // namespace

DeviceTensor Backend::clone(const DeviceTensor& x) {
  const OpScope scope(*this, "clone");
  FISEDIT_REQUIRE(!x.empty(), "clone", "x is empty");
  check_device("clone", x, "x");
  auto out = allocate(x.dtype(), x.shape());
  copy_impl(x, out);
  return out;
}

void Backend::poison(DeviceTensor& x) {
  const OpScope scope(*this, "poison");
  check_device("poison", x, "x");
  if (x.nbytes() > 0) poison_impl(x);
}

DeviceTensor Backend::conv2d(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p) {
  const OpScope scope(*this, "conv2d");
  const auto [ho, wo] = conv_output_size("conv2d", x, w, p, activation_dtype());
  auto out = allocate({x.dim(0), ho, wo, w.out_channels});
  conv2d_impl(x, w, p, out);
  return out;
}

DeviceTensor Backend::conv2d_add(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p,
                                 const DeviceTensor& addend) {
  const OpScope scope(*this, "conv2d+add");
  const auto [ho, wo] = conv_output_size("conv2d_add", x, w, p, activation_dtype());
  check_act("conv2d_add", addend, "addend", activation_dtype());
  const Shape out_shape{x.dim(0), ho, wo, w.out_channels};
  const bool residual = addend.shape() == out_shape;
  FISEDIT_REQUIRE((residual || addend.shape() == Shape{x.dim(0), 1, 1, w.out_channels}), "conv2d_add",
          "addend " + shapes(addend) + " is neither the output's shape " + shape_to_string(out_shape) + " nor [N, 1, 1, " +
              std::to_string(w.out_channels) + "]");
  auto out = allocate(out_shape);
  conv2d_add_impl(x, w, p, addend, residual ? 1 : ho * wo, out);
  return out;
}

void Backend::conv2d_add_impl(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& params,
                              const DeviceTensor& addend, std::int64_t repeat, DeviceTensor& out) {
  conv2d_impl(x, w, params, out);
  const std::int64_t c = out.dim(3);
  if (out.numel() > 0)
    binary_impl(BinaryOp::add, out, addend, Broadcast{out.numel() / c / repeat, repeat, c}, out);
}

DeviceTensor Backend::conv2d_at(const DeviceTensor& x, const ConvWeight& w, const Conv2dParams& p,
                                const DeviceTensor& positions, const InputNorm* norm, const DeviceTensor* appended,
                                const DeviceTensor* residual) {
  const char* op = "conv2d_at";
  const OpScope scope(*this, op);
  const auto [ho, wo] = conv_output_size(op, x, w, p, activation_dtype(), appended);
  check_positions(op, positions, ho * wo);
  if (norm) {
    FISEDIT_REQUIRE(norm->gamma && norm->beta && norm->stats, op, "the input norm lacks its parameters or statistics");
    check_act(op, *norm->gamma, "gamma", activation_dtype());
    check_act(op, *norm->beta, "beta", activation_dtype());
    check_group_norm(op, x.dim(0), w.in_channels, *norm->gamma, *norm->beta, norm->groups, norm->stats);
  }
  if (residual) {
    check_act(op, *residual, "the residual", activation_dtype());
    FISEDIT_REQUIRE(residual->shape() == Shape({x.dim(0), positions.dim(0), w.out_channels}), op,
                    "the residual " + shapes(*residual) + " is not [N, P, Cout] = [" + std::to_string(x.dim(0)) + ", " +
                        std::to_string(positions.dim(0)) + ", " + std::to_string(w.out_channels) + "]");
  }
  auto out = allocate({x.dim(0), positions.dim(0), w.out_channels});
  conv2d_at_impl(x, w, p, ho, wo, positions, norm, appended, residual, out);
  return out;
}

DeviceTensor Backend::gather_positions(const DeviceTensor& x, const DeviceTensor& positions) {
  const OpScope scope(*this, "gather_positions");
  check_act("gather_positions", x, "x", activation_dtype());
  FISEDIT_REQUIRE(x.rank() == 3, "gather_positions", "x " + shapes(x) + " is not [N, L, C]");
  check_positions("gather_positions", positions, x.dim(1));
  auto out = allocate({x.dim(0), positions.dim(0), x.dim(2)});
  gather_positions_impl(x, positions, out);
  return out;
}

namespace {

// A row move's tensors: src [N, L, C], positions within L, dst [N, P, C] (the rows at the positions)
// or, `whole`, [N, L, C] (src's shape).
// The shapes of a row move: gather (src [N, L, C] -> dst [N, P, C]), copy (both [N, L, C]) or scatter
// (src [N, P, C] -> dst [N, L, C]).
enum class RowsMove { gather, copy, scatter };

void check_rows_at(const char* op, const Backend::RowsAt& r, RowsMove move, DType act) {
  check_act(op, r.src, "a source", act);
  check_act(op, r.dst, "a destination", act);
  const char* src_rows = move == RowsMove::scatter ? "P" : "L";
  const char* dst_rows = move == RowsMove::gather ? "P" : "L";
  FISEDIT_REQUIRE(r.src.rank() == 3 && r.dst.rank() == 3, op,
                  "source " + shapes(r.src) + " and destination " + shapes(r.dst) + " are not [N, " + src_rows +
                      ", C] and [N, " + dst_rows + ", C]");
  const auto& whole = move == RowsMove::scatter ? r.dst : r.src;  // the [N, L, C] side the positions index
  const auto& rows = move == RowsMove::scatter ? r.src : r.dst;
  check_positions(op, r.positions, whole.dim(1));
  const std::int64_t count = move == RowsMove::copy ? whole.dim(1) : r.positions.dim(0);
  FISEDIT_REQUIRE(rows.dim(0) == whole.dim(0) && rows.dim(1) == count && rows.dim(2) == whole.dim(2), op,
                  (move == RowsMove::scatter ? "source " + shapes(r.src) + " does not hold the rows of destination " +
                                                   shapes(r.dst)
                                             : "destination " + shapes(r.dst) + " does not hold the rows of " + shapes(r.src)) +
                      (move == RowsMove::copy ? std::string() : " at " + std::to_string(count) + " positions"));
}

// A batched row move: every span checked (naming `op`), then `impl` when there is anything to move.
template <class Impl>
void move_rows(Backend& b, const char* op, RowsMove move, std::span<const Backend::RowsAt> moves, Impl&& impl) {
  const OpScope scope(b, op);
  for (const auto& m : moves) check_rows_at(op, m, move, b.activation_dtype());
  if (!moves.empty()) impl();
}

}  // namespace

void Backend::gather_rows_into(std::span<const RowsAt> gathers) {
  move_rows(*this, "gather_rows_into", RowsMove::gather, gathers, [&] { gather_rows_into_impl(gathers); });
}

void Backend::gather_rows_into_impl(std::span<const RowsAt> gathers) {
  for (const auto& g : gathers) {
    DeviceTensor dst = g.dst;
    gather_positions_impl(g.src, g.positions, dst);
  }
}

void Backend::copy_rows_into(std::span<const RowsAt> copies) {
  move_rows(*this, "copy_rows_into", RowsMove::copy, copies, [&] { copy_rows_into_impl(copies); });
}

void Backend::copy_rows_into_impl(std::span<const RowsAt> copies) {
  for (const auto& c : copies) {
    auto rows = allocate(c.src.dtype(), {c.src.dim(0), c.positions.dim(0), c.src.dim(2)});
    gather_positions_impl(c.src, c.positions, rows);
    scatter_positions_into_impl(c.dst, rows, c.positions, nullptr);
  }
}

void Backend::scatter_rows_into(std::span<const RowsAt> scatters) {
  move_rows(*this, "scatter_rows_into", RowsMove::scatter, scatters, [&] { scatter_rows_into_impl(scatters); });
}

void Backend::scatter_rows_into_impl(std::span<const RowsAt> scatters) {
  for (const auto& s : scatters) scatter_positions_into_impl(s.dst, s.src, s.positions, nullptr);
}

void Backend::scatter_positions_into(const DeviceTensor& base, const DeviceTensor& values, const DeviceTensor& positions,
                                     const DeviceTensor* addend) {
  const char* op = "scatter_positions_into";
  const OpScope scope(*this, op);
  check_scatter(op, base, values, positions, addend, nullptr);
  scatter_positions_into_impl(base, values, positions, addend);
}

void Backend::scatter_positions_into_impl(const DeviceTensor& base, const DeviceTensor& values,
                                          const DeviceTensor& positions, const DeviceTensor* addend) {
  DeviceTensor out = base;
  if (!addend) {
    scatter_positions_impl(values, positions, out);
    return;
  }
  auto sum = allocate(values.shape());
  const std::int64_t n = values.dim(0), p = values.dim(1), c = values.dim(2);
  const bool per_image = addend->dim(1) != p;
  binary_impl(BinaryOp::add, values, *addend, per_image ? Broadcast{n, p, c} : Broadcast{n * p, 1, c}, sum);
  scatter_positions_impl(sum, positions, out);
}

void Backend::check_scatter(const char* op, const DeviceTensor& base, const DeviceTensor& values,
                            const DeviceTensor& positions, const DeviceTensor* addend, const DeviceTensor* inverse) {
  check_act(op, base, "base", activation_dtype());
  check_act(op, values, "values", activation_dtype());
  FISEDIT_REQUIRE(base.rank() == 3 && values.rank() == 3 && base.dim(0) == values.dim(0) && base.dim(2) == values.dim(2),
          op, "base " + shapes(base) + " and values " + shapes(values) + " are not [N, L, C] and [N, P, C]");
  check_positions(op, positions, base.dim(1));
  FISEDIT_REQUIRE(positions.dim(0) == values.dim(1), op, "values " + shapes(values) + " for " +
                                                                      std::to_string(positions.dim(0)) + " positions");
  if (addend) {
    check_act(op, *addend, "addend", activation_dtype());
    const Shape per_image{values.dim(0), 1, values.dim(2)};
    FISEDIT_REQUIRE(addend->shape() == values.shape() || addend->shape() == per_image, op,
            "addend " + shapes(*addend) + " is neither the values' shape " + shapes(values) + " nor [N, 1, C]");
  }
  if (inverse) {
    const Shape places{base.dim(1)};
    FISEDIT_REQUIRE(inverse->dtype() == DType::i32 && inverse->shape() == places, op,
            "inverse " + shapes(*inverse) + " is not I32 [" + std::to_string(base.dim(1)) + "]");
    check_device(op, *inverse, "inverse");
  }
}

DeviceTensor Backend::scatter_positions(const DeviceTensor& base, const DeviceTensor& values,
                                        const DeviceTensor& positions, const DeviceTensor* addend,
                                        const DeviceTensor* inverse) {
  const char* op = "scatter_positions";
  const OpScope scope(*this, op);
  check_scatter(op, base, values, positions, addend, inverse);
  auto out = allocate(base.dtype(), base.shape());
  scatter_positions_copy_impl(base, values, positions, addend, inverse, out);
  return out;
}

void Backend::scatter_positions_copy_impl(const DeviceTensor& base, const DeviceTensor& values,
                                          const DeviceTensor& positions, const DeviceTensor* addend,
                                          const DeviceTensor* inverse, DeviceTensor& out) {
  (void)inverse;
  copy_impl(base, out);
  Backend::scatter_positions_into_impl(out, values, positions, addend);
}

DeviceTensor Backend::group_norm(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                                 int groups, float eps, bool silu, GroupNormStats* stats_out,
                                 const GroupNormStats* stats_in) {
  const OpScope scope(*this, "group_norm");
  const char* op = "group_norm";
  check_act(op, x, "x", activation_dtype());
  check_act(op, gamma, "gamma", activation_dtype());
  check_act(op, beta, "beta", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 2, op, "x " + shapes(x) + " is not [N, ..., C]");
  const std::int64_t n = x.dim(0), c = x.dim(-1);
  check_group_norm(op, n, c, gamma, beta, groups, stats_in);
  if (stats_out) {
    stats_out->mean = allocate(DType::f32, {n, groups});
    stats_out->var = allocate(DType::f32, {n, groups});
  }
  auto out = allocate(x.shape());
  group_norm_impl(x.reshaped({n, x.numel() / (n * c), c}), gamma, beta, groups, eps, silu, stats_out, stats_in, out);
  return out;
}

DeviceTensor Backend::layer_norm(const DeviceTensor& x, const DeviceTensor& gamma, const DeviceTensor& beta,
                                 float eps) {
  const OpScope scope(*this, "layer_norm");
  const char* op = "layer_norm";
  check_act(op, x, "x", activation_dtype());
  check_act(op, gamma, "gamma", activation_dtype());
  check_act(op, beta, "beta", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 1 && gamma.shape() == Shape{x.dim(-1)} && beta.shape() == Shape{x.dim(-1)}, op,
          "gamma " + shapes(gamma) + " / beta " + shapes(beta) + " do not match x " + shapes(x));
  auto out = allocate(x.shape());
  layer_norm_impl(x, gamma, beta, eps, out);
  return out;
}

DeviceTensor Backend::attention(const DeviceTensor& q, const DeviceTensor& k, const DeviceTensor& v,
                                const AttentionParams& params) {
  const OpScope scope(*this, "attention");
  const char* op = "attention";
  check_act(op, q, "q", activation_dtype());
  check_act(op, k, "k", activation_dtype());
  check_act(op, v, "v", activation_dtype());
  FISEDIT_REQUIRE(q.rank() == 3 && k.rank() == 3 && k.shape() == v.shape() && q.dim(0) == k.dim(0) && q.dim(2) == k.dim(2),
          op, "q " + shapes(q) + ", k " + shapes(k) + ", v " + shapes(v) + " are not [B, Lq, C], [B, Lk, C] x2");
  FISEDIT_REQUIRE(params.heads >= 1 && q.dim(2) % params.heads == 0, op,
          std::to_string(q.dim(2)) + " channels do not split into " + std::to_string(params.heads) + " heads");
  FISEDIT_REQUIRE(k.dim(1) >= 1, op, "no keys");
  auto out = allocate(q.shape());
  attention_impl(q, k, v, params, out);
  return out;
}

DeviceTensor Backend::attention_probs(const DeviceTensor& q, const DeviceTensor& k, const AttentionParams& params) {
  const OpScope scope(*this, "attention_probs");
  const char* op = "attention_probs";
  check_act(op, q, "q", activation_dtype());
  check_act(op, k, "k", activation_dtype());
  FISEDIT_REQUIRE(q.rank() == 3 && k.rank() == 3 && q.dim(0) == k.dim(0) && q.dim(2) == k.dim(2), op,
          "q " + shapes(q) + " and k " + shapes(k) + " are not [B, Lq, C] and [B, Lk, C]");
  FISEDIT_REQUIRE(params.heads >= 1 && q.dim(2) % params.heads == 0, op,
          std::to_string(q.dim(2)) + " channels do not split into " + std::to_string(params.heads) + " heads");
  FISEDIT_REQUIRE(k.dim(1) >= 1, op, "no keys");
  auto out = allocate({q.dim(0), params.heads, q.dim(1), k.dim(1)});
  attention_probs_impl(q, k, params, out);
  return out;
}

DeviceTensor Backend::attention_apply(const DeviceTensor& probs, const DeviceTensor& v) {
  const OpScope scope(*this, "attention_apply");
  const char* op = "attention_apply";
  check_act(op, probs, "probs", activation_dtype());
  check_act(op, v, "v", activation_dtype());
  FISEDIT_REQUIRE(probs.rank() == 4 && v.rank() == 3 && probs.dim(0) == v.dim(0) && probs.dim(3) == v.dim(1) &&
              probs.dim(1) >= 1 && v.dim(2) % probs.dim(1) == 0,
          op, "probs " + shapes(probs) + " and v " + shapes(v) + " are not [B, heads, Lq, Lk] and [B, Lk, heads * D]");
  auto out = allocate({probs.dim(0), probs.dim(2), v.dim(2)});
  attention_apply_impl(probs, v, out);
  return out;
}

DeviceTensor Backend::replace_attention_columns(const DeviceTensor& probs, const DeviceTensor& source,
                                                const DeviceTensor& columns, std::int64_t first) {
  const OpScope scope(*this, "replace_attention_columns");
  const char* op = "replace_attention_columns";
  check_act(op, probs, "probs", activation_dtype());
  check_act(op, source, "source", activation_dtype());
  FISEDIT_REQUIRE(probs.rank() == 4 && source.rank() == 4 && probs.dim(1) == source.dim(1) && probs.dim(2) == source.dim(2),
          op, "probs " + shapes(probs) + " and source " + shapes(source) + " are not [B, heads, Lq, Lk] and [S, heads, Lq, Ls]");
  FISEDIT_REQUIRE(0 <= first && first + source.dim(0) <= probs.dim(0), op,
          "batch items [" + std::to_string(first) + ", " + std::to_string(first + source.dim(0)) +
              ") are not inside probs " + shapes(probs));
  FISEDIT_REQUIRE(!columns.empty() && columns.dtype() == DType::i32 && columns.shape() == Shape{probs.dim(3)}, op,
          "columns must be an I32 [" + std::to_string(probs.dim(3)) + "] tensor (one per key of probs)");
  check_device(op, columns, "columns");
  auto out = clone(probs);
  replace_attention_columns_impl(source, columns, first, out);
  return out;
}

DeviceTensor Backend::activation(const DeviceTensor& x, Activation act) {
  const OpScope scope(*this, "activation");
  check_act("activation", x, "x", activation_dtype());
  auto out = allocate(x.shape());
  activation_impl(x, act, out);
  return out;
}

DeviceTensor Backend::geglu(const DeviceTensor& x) {
  const OpScope scope(*this, "geglu");
  check_act("geglu", x, "x", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 1 && x.dim(-1) % 2 == 0, "geglu", "x " + shapes(x) + " has an odd channel count");
  auto out = allocate(with_last(x.shape(), x.dim(-1) / 2));
  geglu_impl(x, out);
  return out;
}

void Backend::geglu_impl(const DeviceTensor& x, DeviceTensor& out) {
  const auto f = x.dim(-1) / 2;
  const auto hidden = slice_channels(x, 0, f);
  const auto gate = activation(slice_channels(x, f, 2 * f), Activation::gelu);
  binary_impl(BinaryOp::mul, hidden, gate, {1, 1, hidden.numel()}, out);
}

DeviceTensor Backend::binary(BinaryOp op, const char* name, const DeviceTensor& a, const DeviceTensor& b) {
  const OpScope scope(*this, name);
  check_act(name, a, "a", activation_dtype());
  check_act(name, b, "b", activation_dtype());
  const auto fail = [&] { FISEDIT_REQUIRE(false, name, "b " + shapes(b) + " does not broadcast to a " + shapes(a)); };
  if (b.rank() > a.rank()) fail();
  Shape bs(static_cast<std::size_t>(a.rank() - b.rank()), 1);
  bs.insert(bs.end(), b.shape().begin(), b.shape().end());
  // Leading dims equal to a's, then dims where b is 1, then trailing dims equal to a's.
  std::size_t i = 0;
  const std::size_t r = bs.size();
  Broadcast shape;
  while (i < r && bs[i] == a.shape()[i] && a.shape()[i] != 1) shape.outer *= bs[i++];
  while (i < r && bs[i] == 1) shape.repeat *= a.shape()[i++];
  for (; i < r; ++i) {
    if (bs[i] != a.shape()[i]) fail();
    shape.inner *= bs[i];
  }
  auto out = allocate(a.shape());
  binary_impl(op, a, b, shape, out);
  return out;
}

DeviceTensor Backend::add(const DeviceTensor& a, const DeviceTensor& b) { return binary(BinaryOp::add, "add", a, b); }
DeviceTensor Backend::mul(const DeviceTensor& a, const DeviceTensor& b) { return binary(BinaryOp::mul, "mul", a, b); }

DeviceTensor Backend::scale(const DeviceTensor& x, float s) {
  const OpScope scope(*this, "scale");
  check_act("scale", x, "x", activation_dtype());
  auto out = allocate(x.shape());
  scale_impl(x, s, out);
  return out;
}

DeviceTensor Backend::upsample_nearest(const DeviceTensor& x, std::int64_t out_h, std::int64_t out_w) {
  const OpScope scope(*this, "upsample_nearest");
  check_act("upsample_nearest", x, "x", activation_dtype());
  FISEDIT_REQUIRE(x.rank() == 4, "upsample_nearest", "x " + shapes(x) + " is not [N, H, W, C]");
  FISEDIT_REQUIRE(out_h > 0 && out_w > 0, "upsample_nearest", "target size must be positive");
  auto out = allocate({x.dim(0), out_h, out_w, x.dim(3)});
  upsample_nearest_impl(x, out);
  return out;
}

DeviceTensor Backend::concat_channels(const DeviceTensor& a, const DeviceTensor& b) {
  const OpScope scope(*this, "concat_channels");
  check_act("concat_channels", a, "a", activation_dtype());
  check_act("concat_channels", b, "b", activation_dtype());
  FISEDIT_REQUIRE(a.rank() >= 1 && a.rank() == b.rank() && with_last(a.shape(), 0) == with_last(b.shape(), 0),
          "concat_channels", "a " + shapes(a) + " and b " + shapes(b) + " differ in more than channels");
  auto out = allocate(with_last(a.shape(), a.dim(-1) + b.dim(-1)));
  concat_channels_impl(a, b, out);
  return out;
}

DeviceTensor Backend::slice_channels(const DeviceTensor& x, std::int64_t begin, std::int64_t end) {
  const OpScope scope(*this, "slice_channels");
  check_act("slice_channels", x, "x", activation_dtype());
  FISEDIT_REQUIRE(x.rank() >= 1 && 0 <= begin && begin <= end && end <= x.dim(-1), "slice_channels",
          "[" + std::to_string(begin) + ", " + std::to_string(end) + ") is not inside the channels of " + shapes(x));
  auto out = allocate(with_last(x.shape(), end - begin));
  slice_channels_impl(x, begin, out);
  return out;
}

DeviceTensor Backend::select_positions(const DeviceTensor& mask, const DeviceTensor& a, const DeviceTensor& b) {
  const OpScope scope(*this, "select_positions");
  check_act("select_positions", mask, "mask", activation_dtype());
  check_act("select_positions", a, "a", activation_dtype());
  check_act("select_positions", b, "b", activation_dtype());
  FISEDIT_REQUIRE(a.shape() == b.shape(), "select_positions", "a " + shapes(a) + " and b " + shapes(b) + " differ");
  FISEDIT_REQUIRE(a.rank() >= 2, "select_positions", "a " + shapes(a) + " is not [N, ..., C]");
  const std::int64_t positions = a.numel() / std::max<std::int64_t>(1, a.dim(0) * a.dim(-1));
  FISEDIT_REQUIRE(mask.numel() == positions, "select_positions",
          "mask " + shapes(mask) + " does not have one value per position of " + shapes(a));
  auto out = allocate(a.shape());
  select_positions_impl(mask, a, b, out);
  return out;
}

DeviceTensor Backend::sampler_step(const DeviceTensor& prediction, float cfg_scale, const SamplerRule& rule,
                                   const DeviceTensor& x, DeviceTensor* history, const DeviceTensor* noise,
                                   const DeviceTensor* mask, const DeviceTensor* keep, DeviceTensor& flags) {
  const char* op = "sampler_step";
  const OpScope scope(*this, op);
  check_act(op, prediction, "the prediction", activation_dtype());
  const auto f32 = [&](const DeviceTensor* t, const char* what) {
    FISEDIT_REQUIRE(t && !t->empty() && t->dtype() == DType::f32, op, std::string(what) + " must be a float32 tensor");
    check_device(op, *t, what);
  };
  f32(&x, "the latents");
  FISEDIT_REQUIRE(x.rank() == 3, op, "the latents " + shapes(x) + " are not [C, h, w]");
  FISEDIT_REQUIRE(prediction.rank() == 4 && (prediction.dim(0) == 1 || prediction.dim(0) == 2) &&
                      prediction.dim(1) == x.dim(0) && prediction.dim(2) == x.dim(1) && prediction.dim(3) == x.dim(2),
                  op, "the prediction " + shapes(prediction) + " is not [1 or 2, C, h, w] of the latents " + shapes(x));
  const auto like_x = [&](const DeviceTensor* t, const char* what) {
    f32(t, what);
    FISEDIT_REQUIRE(t->shape() == x.shape(), op, std::string(what) + " " + shapes(*t) + " differs from the latents " + shapes(x));
  };
  if (rule.history || history) like_x(history, "the history");
  if (rule.noise) like_x(noise, "the noise");
  FISEDIT_REQUIRE(!mask == !keep, op, "a mask needs latents to keep, and the reverse");
  if (mask) {
    f32(mask, "the mask");
    FISEDIT_REQUIRE(mask->numel() == x.dim(1) * x.dim(2), op, "the mask " + shapes(*mask) + " is not [h, w] of " + shapes(x));
    like_x(keep, "the kept latents");
  }
  FISEDIT_REQUIRE(!flags.empty() && flags.dtype() == DType::i32 && flags.numel() == 1, op, "flags must be one I32 value");
  check_device(op, flags, "the flags");
  auto out = allocate(DType::f32, x.shape());
  sampler_step_impl(prediction, cfg_scale, rule, x, history, rule.noise ? noise : nullptr, mask, keep, flags, out);
  return out;
}

DeviceTensor Backend::sampler_input(const DeviceTensor& x, float divisor, std::int64_t batch) {
  const char* op = "sampler_input";
  const OpScope scope(*this, op);
  FISEDIT_REQUIRE(!x.empty() && x.dtype() == DType::f32 && x.rank() == 3, op, "the latents must be float32 [C, h, w]");
  check_device(op, x, "the latents");
  FISEDIT_REQUIRE(batch == 1 || batch == 2, op, "the batch must be 1 or 2");
  auto out = allocate({batch, x.dim(0), x.dim(1), x.dim(2)});
  sampler_input_impl(x, divisor, out);
  return out;
}

DeviceTensor Backend::upload_f32(std::span<const float> values, Shape shape) {
  auto staged = allocate_host(DType::f32, shape);
  FISEDIT_REQUIRE(static_cast<std::size_t>(staged.numel()) == values.size(), "upload_f32",
                  std::to_string(values.size()) + " values for " + shape_to_string(shape));
  std::copy(values.begin(), values.end(), staged.data_as<float>());
  TensorCopy copy{staged, allocate(DType::f32, std::move(shape))};
  wait(copy_async(std::span(&copy, 1)));
  return copy.dst;
}

DeviceTensor Backend::embedding(const DeviceTensor& table, const DeviceTensor& ids) {
  const OpScope scope(*this, "embedding");
  check_act("embedding", table, "table", activation_dtype());
  FISEDIT_REQUIRE(table.rank() == 2, "embedding", "table " + shapes(table) + " is not [V, C]");
  FISEDIT_REQUIRE(!ids.empty() && ids.dtype() == DType::i32, "embedding", "ids must be an I32 tensor (upload integer ids)");
  check_device("embedding", ids, "ids");
  Shape s = ids.shape();
  s.push_back(table.dim(1));
  auto out = allocate(std::move(s));
  embedding_impl(table, ids, out);
  return out;
}

DeviceTensor Backend::nchw_to_nhwc(const DeviceTensor& x) {
  const OpScope scope(*this, "layout");
  check_act("nchw_to_nhwc", x, "x", activation_dtype());
  FISEDIT_REQUIRE(x.rank() == 4, "nchw_to_nhwc", "x " + shapes(x) + " is not [N, C, H, W]");
  auto out = allocate({x.dim(0), x.dim(2), x.dim(3), x.dim(1)});
  convert_layout_impl(x, true, out);
  return out;
}

DeviceTensor Backend::nhwc_to_nchw(const DeviceTensor& x) {
  const OpScope scope(*this, "layout");
  check_act("nhwc_to_nchw", x, "x", activation_dtype());
  FISEDIT_REQUIRE(x.rank() == 4, "nhwc_to_nchw", "x " + shapes(x) + " is not [N, H, W, C]");
  auto out = allocate({x.dim(0), x.dim(3), x.dim(1), x.dim(2)});
  convert_layout_impl(x, false, out);
  return out;
}

}  // namespace fisedit
