#pragma once
// A host tensor: dtype, shape and a pointer to contiguous row-major bytes, kept alive by a shared
// owner (a memory-mapped file or an owned buffer). Loading never copies weights: tensors of a model
// are views into the mapped files.
#include "core/dtype.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace fisedit {

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[4, 3, 3]"

class Tensor {
public:
  Tensor() = default;
  // A view of `data` (nbytes must equal numel * dtype size), kept alive by `owner`.
  Tensor(DType dtype, Shape shape, const std::byte* data, std::shared_ptr<const void> owner);

  // A new tensor owning a copy of `values`.
  static Tensor from_f32(Shape shape, std::span<const float> values);
  static Tensor from_i64(Shape shape, std::span<const std::int64_t> values);
  // A new zero-filled tensor.
  static Tensor zeros(DType dtype, Shape shape);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_.at(static_cast<std::size_t>(i)); }
  int rank() const { return static_cast<int>(shape_.size()); }
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  const std::byte* data() const { return data_; }
  std::span<const std::byte> bytes() const { return {data_, nbytes()}; }
  bool empty() const { return data_ == nullptr; }

  // The same bytes under another shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // Rows [begin, end) of the first dimension, as a view.
  Tensor slice_rows(std::int64_t begin, std::int64_t end) const;

  // Values converted to float32 (any float dtype or integer dtype).
  std::vector<float> to_f32() const;
  // Values converted to int64 (integer dtypes only).
  std::vector<std::int64_t> to_i64() const;

private:
  DType dtype_ = DType::f32;
  Shape shape_;
  const std::byte* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

}  // namespace fisedit
