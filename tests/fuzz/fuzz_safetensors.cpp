// libFuzzer target: a safetensors file (header and data area) through SafetensorsFile::open, then as a
// single-file checkpoint through load_model (key mapping, configs inferred from shapes).
#include "core/error.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fisedit::fuzz::write_input("model.safetensors", data, size);
  try {
    const auto file = fisedit::SafetensorsFile::open(path);
    for (const auto& info : file.tensors()) {
      const auto t = file.tensor(info);
      if (t.nbytes() && fisedit::dtype_is_float(t.dtype()) && t.numel() < (1 << 16)) (void)t.to_f32();
    }
  } catch (const fisedit::Error&) {
    return 0;
  }
  try {
    (void)fisedit::load_model(path);
  } catch (const fisedit::Error&) {
  }
  return 0;
}
