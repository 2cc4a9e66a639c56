// libFuzzer target: a tokenizer.json through ClipTokenizer::from_folder, then a prompt tokenized with it.
#include "core/error.h"
#include "text/clip_tokenizer.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fisedit::fuzz::write_input("tokenizer/tokenizer.json", data, size);
  try {
    const auto tokenizer = fisedit::ClipTokenizer::from_folder(path.parent_path());
    (void)tokenizer.encode("a photo of a cat, (red:1.2) <|endoftext|> 123 ünïcödé");
  } catch (const fisedit::Error&) {
  }
  return 0;
}
