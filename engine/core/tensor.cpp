// Host tensors (tensor.h): shapes, owned copies, views (reshape, row slices), conversion to float and int64.
#include "core/tensor.h"

#include "core/error.h"
#include "core/half.h"

#include <cassert>
#include <cstring>

namespace fisedit {

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape, const std::byte* data, std::shared_ptr<const void> owner)
    : dtype_(dtype), shape_(std::move(shape)), data_(data), owner_(std::move(owner)) {}

namespace {

template <class T>
Tensor owned_copy(DType dtype, Shape shape, std::span<const T> values) {
  if (shape_numel(shape) != static_cast<std::int64_t>(values.size()))
    throw Error(ErrorCode::invalid_argument,
                "tensor of shape " + shape_to_string(shape) + " cannot hold " + std::to_string(values.size()) + " values");
  auto buffer = std::make_shared<std::vector<T>>(values.begin(), values.end());
  const auto* data = reinterpret_cast<const std::byte*>(buffer->data());
  return Tensor(dtype, std::move(shape), data, std::move(buffer));
}

}  // namespace

Tensor Tensor::from_f32(Shape shape, std::span<const float> values) {
  return owned_copy(DType::f32, std::move(shape), values);
}

Tensor Tensor::from_i64(Shape shape, std::span<const std::int64_t> values) {
  return owned_copy(DType::i64, std::move(shape), values);
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  const auto n = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(dtype);
  auto buffer = std::make_shared<std::vector<std::byte>>(n);
  const auto* data = buffer->data();
  return Tensor(dtype, std::move(shape), data, std::move(buffer));
}

Tensor Tensor::reshaped(Shape shape) const {
  if (shape_numel(shape) != numel())
    throw Error(ErrorCode::invalid_argument,
                "cannot reshape " + shape_to_string(shape_) + " to " + shape_to_string(shape));
  return Tensor(dtype_, std::move(shape), data_, owner_);
}

Tensor Tensor::slice_rows(std::int64_t begin, std::int64_t end) const {
  assert(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0]);
  Shape s = shape_;
  s[0] = end - begin;
  const std::size_t row_bytes = shape_[0] ? nbytes() / static_cast<std::size_t>(shape_[0]) : 0;
  return Tensor(dtype_, std::move(s), data_ + static_cast<std::size_t>(begin) * row_bytes, owner_);
}

namespace {

template <class Src, class Dst, class Convert>
std::vector<Dst> convert_all(const std::byte* data, std::size_t n, Convert convert) {
  std::vector<Dst> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    Src v;
    std::memcpy(&v, data + i * sizeof(Src), sizeof(Src));  // mapped data may be unaligned
    out[i] = convert(v);
  }
  return out;
}

}  // namespace

std::vector<float> Tensor::to_f32() const {
  const auto n = static_cast<std::size_t>(numel());
  auto cast = [](auto v) { return static_cast<float>(v); };
  switch (dtype_) {
    case DType::f32: return convert_all<float, float>(data_, n, cast);
    case DType::f64: return convert_all<double, float>(data_, n, cast);
    case DType::f16: return convert_all<std::uint16_t, float>(data_, n, half_to_float);
    case DType::bf16: return convert_all<std::uint16_t, float>(data_, n, bf16_to_float);
    case DType::i64: return convert_all<std::int64_t, float>(data_, n, cast);
    case DType::i32: return convert_all<std::int32_t, float>(data_, n, cast);
    case DType::i16: return convert_all<std::int16_t, float>(data_, n, cast);
    case DType::i8: return convert_all<std::int8_t, float>(data_, n, cast);
    case DType::u8:
    case DType::boolean: return convert_all<std::uint8_t, float>(data_, n, cast);
  }
  return {};
}

std::vector<std::int64_t> Tensor::to_i64() const {
  const auto n = static_cast<std::size_t>(numel());
  auto cast = [](auto v) { return static_cast<std::int64_t>(v); };
  switch (dtype_) {
    case DType::i64: return convert_all<std::int64_t, std::int64_t>(data_, n, cast);
    case DType::i32: return convert_all<std::int32_t, std::int64_t>(data_, n, cast);
    case DType::i16: return convert_all<std::int16_t, std::int64_t>(data_, n, cast);
    case DType::i8: return convert_all<std::int8_t, std::int64_t>(data_, n, cast);
    case DType::u8:
    case DType::boolean: return convert_all<std::uint8_t, std::int64_t>(data_, n, cast);
    default:
      throw Error(ErrorCode::invalid_argument,
                  "tensor of type " + std::string(dtype_name(dtype_)) + " is not an integer tensor");
  }
}

}  // namespace fisedit
