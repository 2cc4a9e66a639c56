// libFuzzer target: text through the prompt-emphasis parser and the AUTOMATIC1111 parameters parser.
#include "core/error.h"
#include "io/a1111_parameters.h"
#include "text/prompt_weights.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)fisedit::parse_prompt_weights(text);
  } catch (const fisedit::Error&) {
  }
  try {
    (void)fisedit::parse_a1111_parameters(text);
  } catch (const fisedit::Error&) {
  }
  return 0;
}
