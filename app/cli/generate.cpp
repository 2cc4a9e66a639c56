// fisedit-cli generate: one image from a prompt, as diffusers' StableDiffusionPipeline makes it.
#include "cli/commands.h"
#include "cli/session.h"
#include "io/safetensors.h"

#include <cstdio>
#include <stdexcept>

namespace fisedit::cli {

int generate_command(const std::vector<std::string>& raw) {
  const Arguments args(raw, generation_options());
  if (!args.positional().empty())
    throw std::invalid_argument("unexpected argument '" + args.positional()[0] + "' (quote the prompt and pass it with --prompt)");
  auto r = parse_generation_request(args);
  const auto session = open_session(args);
  r = session.sd->resolve(r);
  std::fprintf(stderr, "device: %s\n", session.backend->name().c_str());

  // --batch-count N: one image per seed, seed .. seed+N-1, each written as it is done ("out-<seed>.png").
  const int count = batch_count(args);
  const GenerationRequest first = r;
  for (int i = 0; i < count; ++i) {
    r.seed = first.seed + static_cast<std::uint64_t>(i);
    if (count > 1) std::fprintf(stderr, "image %d of %d: seed %llu\n", i + 1, count, static_cast<unsigned long long>(r.seed));
    const auto result = session.sd->generate(r, print_progress);
    const std::string out = batch_path(args.get("out").value_or("fisedit-" + std::to_string(r.seed) + ".png"), r.seed,
                                       args.get("out") ? count : 1);
    write_generation_png(out, result.image, r, result, session);
    if (const auto latents = args.get("save-latents"))
      write_safetensors(batch_path(*latents, r.seed, count), {{"latents", result.latents}});
    std::fprintf(stderr, "wrote %s (%dx%d, seed %llu, %s, %.1f s)\n", out.c_str(), r.width, r.height,
                 static_cast<unsigned long long>(r.seed), r.scheduler.c_str(), result.timings.total_ms / 1000.0);
  }
  return 0;
}

}  // namespace fisedit::cli
