#pragma once
// Element types of tensors and model files, with their safetensors names and sizes.
#include <cstddef>
#include <optional>
#include <string_view>

namespace fisedit {

// Element types that model files use. Names follow the safetensors spelling.
enum class DType { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

std::size_t dtype_size(DType t);
std::string_view dtype_name(DType t);                       // "F32", "F16", ...
std::optional<DType> dtype_from_name(std::string_view name);  // nullopt for names we do not know
bool dtype_is_float(DType t);

}  // namespace fisedit
