// fisedit-cli: the engine from the command line, for scripts and measurement.
#include "cli/commands.h"
#include "core/error.h"

#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: fisedit-cli <command> [options]\n"
    "\n"
    "commands:\n"
    "  info      --model PATH [--config DIR]        what the model is: family, prediction, sizes, parameters\n"
    "  tokenize  --model PATH [--config DIR] TEXT   the 77 CLIP token ids of TEXT\n"
    "  generate  --model PATH [--config DIR] --prompt TEXT [--negative TEXT] [--seed N] [--steps N]\n"
    "            [--cfg F] [--scheduler ddim|dpmpp2m|euler|euler_a|dpmpp2m_karras|euler_karras]\n"
    "            [--width W] [--height H (multiples of 8, up to 4096)]\n"
    "            [--device auto|cpu|cuda] [--out FILE.png] [--save-latents FILE.safetensors]\n"
    "            [--initial-noise FILE.safetensors[#KEY]]   an image from a prompt\n"
    "            [--init-image FILE.png|.jpg [--strength F (0.75)]]  image to image: start from that picture\n"
    "            [--batch-count N (1..16)]  N images, seeds seed..seed+N-1; with N > 1 each file gets its seed:\n"
    "            --out out.png writes out-<seed>.png (likewise --save-latents)\n"
    "  edit      generate's options and --edit-prompt TEXT [--edit-negative TEXT] [--mask FILE.png]\n"
    "            [--mask-mode auto|painted|intersect] [--mask-margin N (2)] [--detect-steps K]\n"
    "            [--global-change whole|region (whole)] [--attention-control on|off] [--out EDITED.png]\n"
    "            [--base-out BASE.png]\n"
    "            [--mask-out MASK.png] [--stats-json FILE]\n"
    "            [--cache-device-budget BYTES (e.g. 2G; the rest of the cache in pinned host memory)]\n"
    "            the image of --prompt, then edited to --edit-prompt: only the affected region re-renders\n"
    "            (--batch-count N: that for each seed seed..seed+N-1, every file named FILE-<seed>.EXT)\n"
    "\n"
    "PATH is a diffusers pipeline folder or a single-file .safetensors checkpoint. --config DIR gives the\n"
    "configs (and tokenizer) of a single-file checkpoint, as diffusers' from_single_file(config=DIR).\n";

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, std::function<int(const std::vector<std::string>&)>> commands = {
      {"info", fisedit::cli::info_command},
      {"tokenize", fisedit::cli::tokenize_command},
      {"generate", fisedit::cli::generate_command},
      {"edit", fisedit::cli::edit_command},
  };
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const auto it = commands.find(argv[1]);
  if (it == commands.end()) {
    std::fprintf(stderr, "fisedit-cli: unknown command '%s' (try --help)\n", argv[1]);
    return 2;
  }
  try {
    return it->second(std::vector<std::string>(argv + 2, argv + argc));
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "fisedit-cli %s: %s\n", argv[1], e.what());
    return 2;
  } catch (const fisedit::Error& e) {
    std::fprintf(stderr, "fisedit-cli %s: error: %s\n", argv[1], e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "fisedit-cli %s: error: not enough memory for this model and request\n", argv[1]);
    return 1;
  } catch (const std::exception& e) {
    // Every input error is a fisedit::Error naming the file; anything else is a bug of fisedit.
    std::fprintf(stderr, "fisedit-cli %s: unexpected error (a bug in fisedit; please report it with the command): %s\n",
                 argv[1], e.what());
    return 1;
  }
}
