// libFuzzer target: the other tokenizer layout (vocab.json + merges.txt + tokenizer_config.json), split at NULs.
#include "core/error.h"
#include "text/clip_tokenizer.h"
#include "fuzz_support.h"

#include <string_view>

// The input is vocab.json, then merges.txt, then tokenizer_config.json, separated by NUL bytes (which
// none of them holds); a part that is missing is not written, so the loader's fallbacks run too.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string_view parts[3];
  int count = 0;
  for (; count < 3 && !rest.empty(); ++count) {
    const auto nul = count < 2 ? rest.find('\0') : std::string_view::npos;
    parts[count] = rest.substr(0, nul);
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
  }
  const char* names[3] = {"vocab/vocab.json", "vocab/merges.txt", "vocab/tokenizer_config.json"};
  std::filesystem::path dir;
  for (int i = 0; i < 3; ++i) {
    const auto path = fisedit::fuzz::write_input(names[i], reinterpret_cast<const std::uint8_t*>(parts[i].data()), parts[i].size());
    if (i >= count) std::filesystem::remove(path);
    dir = path.parent_path();
  }
  try {
    const auto tokenizer = fisedit::ClipTokenizer::from_folder(dir);
    (void)tokenizer.encode("a photo of a cat, (red:1.2) <|endoftext|> 123 ünïcödé");
  } catch (const fisedit::Error&) {
  }
  return 0;
}
