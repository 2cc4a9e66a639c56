// libFuzzer target: a PNG through read_png (masks) and read_png_text (parameters of a dropped image),
// and any bytes through read_image (image to image's starting PNG or JPEG: read_jpeg, io/image_read.h).
#include "core/error.h"
#include "io/image_file.h"
#include "io/image_read.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fisedit::fuzz::write_input("mask.png", data, size);
  try {
    (void)fisedit::read_png(path);
  } catch (const fisedit::Error&) {
  }
  try {
    (void)fisedit::read_png_text(path);
  } catch (const fisedit::Error&) {
  }
  try {
    (void)fisedit::read_image(path);
  } catch (const fisedit::Error&) {
  }
  return 0;
}
