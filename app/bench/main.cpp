// fisedit-bench: how fast and how large the engine runs on one device, stage by stage (text encoder,
// one U-Net step on the CFG batch, VAE decode) and end to end (prompt to pixels), on a real model or on
// a built-in architecture with random weights (which costs what the real model costs). One table on
// stdout, the same numbers as JSON with --json. Benchmarks are programs, not timed tests: see
// docs/benchmarks.md for the runs on the GPU machine.
#include "backend/device.h"
#include "bench/fidelity.h"
#include "bench/measure.h"
#include "bench/report.h"
#include "bench/stages.h"
#include "cli/arguments.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "random_model/arch_presets.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace {

using namespace fisedit;

constexpr const char* kUsage =
    "usage: fisedit-bench --arch sd15-512|sd2-512|sd2-768|tiny-sd2|tiny-sd15 [--tokenizer DIR]\n"
    "       fisedit-bench --model PATH [--config DIR] [--arch NAME]\n"
    "   [--width W --height H] [--steps N (20)] [--scheduler ddim|dpmpp2m|euler|euler_a|dpmpp2m_karras|euler_karras (dpmpp2m)] [--cfg F (7.5)]\n"
    "   [--repeat N (10)] [--warmup N (2)] [--generations N (3)] [--device auto|cpu|cuda] [--json FILE]\n"
    "   [--stages text_encoder,unet,vae,generation,edit,edit_sizes,live,attention,fidelity\n"
    "             (all but live, attention and fidelity)]\n"
    "   [--edit-sizes 0.05,0.15,0.30]\n"
    "   [--fidelity-cases N (200)] [--fidelity-seed S (7001)] [--fidelity-examples DIR]\n"
    "   [--mask-margin N (2)] [--detect-steps K (one per 20 steps)]\n"
    "   [--cache-device-budget BYTES (0; e.g. 4G)] [--cache-prefetch-depth N (2)]\n"
    "\n"
    "--arch alone benchmarks that architecture with random weights (every tensor of the real model, same\n"
    "names and shapes). End-to-end generation needs a CLIP tokenizer: the model's own, or --tokenizer DIR\n"
    "(e.g. a diffusers folder's tokenizer/); without one it is skipped. Times are milliseconds with the\n"
    "device synchronised around each run, after warm-up runs; memory is the device pool's (CUDA).\n"
    "--stages attention times the attention op alone on the SD2 768 and SD1.5 512 U-Net shapes (any\n"
    "model, and two sparse edits' few queries against every key; TFLOP/s = 4 B heads Lq Lk D / time);\n"
    "FISEDIT_ATTENTION=legacy runs the previous kernel, FISEDIT_ATTENTION_SPLIT=off|on forces the\n"
    "split-key route off or on (kernels/attention.cuh).\n"
    "--stages edit times single sparse U-Net steps against a dense one (centred squares of 1-50%);\n"
    "edit_sizes times whole automatic edits (needs a tokenizer) whose detected mask is replaced by a blob\n"
    "of each --edit-sizes share, with PSNR inside the changed region against the dense reference route.\n"
    "--stages live times live editing's engine side (needs a tokenizer): a 5% edit cancelled halfway (the\n"
    "text changed again), then the next edit to the end; the cancel's latency, the edit, and their sum.\n"
    "The edit stage also times --steps sparse steps (10% region) with the cache on the device against the\n"
    "cache beyond --cache-device-budget in pinned host memory, prefetched a step ahead (spill_steps), and,\n"
    "with a tokenizer, whole painted-mask edits of a resident and of a spilled generation (spill_edit).\n"
    "--stages fidelity (with --model resources/models/toyworld) measures edit quality against ground truth:\n"
    "N seeded toy-world edits (recolour, reshape, resize, add, remove, background; 256x256, --steps,\n"
    "--scheduler, --cfg), each made from a cached base generation with the automatic mask, the automatic\n"
    "mask with attention control, a painted mask equal to the ground-truth region, and as a fresh generation\n"
    "with the new prompt and seed; every image read back by the toy-world analyser. Edit success,\n"
    "preservation of the other cells, the mask's IoU with the truth, its share outside it, the share\n"
    "re-rendered and the time; the base images' generation quality. --fidelity-examples DIR writes\n"
    "base | changed region | edit triples of the first cases of each kind as PNGs. --mask-margin and\n"
    "--detect-steps set the automatic edits' mask margin and detection steps, as fisedit-cli edit's do.\n"
    "Exit status: 1 on errors, 2 on bad arguments, 3 when the generated image holds NaN or Inf.\n";

template <class T>
T number(const cli::Arguments& args, const std::string& name, T fallback, T min) {
  const auto text = args.get(name);
  if (!text) return fallback;
  T value{};
  const auto* end = text->data() + text->size();
  const auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end || value < min)
    throw std::invalid_argument("--" + name + " expects a number >= " + std::to_string(min) + ", not '" + *text + "'");
  return value;
}

bench::Settings parse(const std::vector<std::string>& raw) {
  const cli::Arguments args(raw,
                            {"arch", "model", "config", "tokenizer", "width", "height", "steps", "scheduler", "cfg",
                             "repeat", "warmup", "generations", "device", "json", "stages", "edit-sizes",
                             "cache-device-budget", "cache-prefetch-depth", "fidelity-cases", "fidelity-seed",
                             "fidelity-examples", "mask-margin", "detect-steps"});
  if (!args.positional().empty()) throw std::invalid_argument("unexpected argument '" + args.positional()[0] + "'");
  bench::Settings s;
  s.arch = args.get("arch").value_or("");
  s.model = args.get("model").value_or("");
  if (s.arch.empty() && s.model.empty()) throw std::invalid_argument("give --arch NAME or --model PATH (try --help)");
  s.config = args.get("config").value_or("");
  s.tokenizer = args.get("tokenizer").value_or("");
  s.width = number(args, "width", 0, 8);
  s.height = number(args, "height", 0, 8);
  s.steps = number(args, "steps", 20, 1);
  s.scheduler = args.get("scheduler").value_or("dpmpp2m");
  s.scheduler_given = args.get("scheduler").has_value();
  s.cfg = number(args, "cfg", 7.5f, 1.0f);
  s.repeat = number(args, "repeat", 10, 1);
  s.warmup = number(args, "warmup", 2, 0);
  s.generations = number(args, "generations", 3, 0);
  s.device = parse_device_choice(args.get("device").value_or("auto"));
  s.json = args.get("json").value_or("");
  s.cache_device_budget = args.bytes("cache-device-budget").value_or(0);
  s.cache_prefetch_depth = number(args, "cache-prefetch-depth", 2, 2);
  s.fidelity_cases = number(args, "fidelity-cases", 200, 1);
  s.fidelity_seed = number<std::uint64_t>(args, "fidelity-seed", 7001, 0);
  s.fidelity_examples = args.get("fidelity-examples").value_or("");
  s.mask_margin = number(args, "mask-margin", kDefaultMaskMargin, 0);
  s.detect_steps = number(args, "detect-steps", -1, -1);
  if (const auto sizes = args.get("edit-sizes")) {
    s.edit_sizes.clear();
    for (std::size_t begin = 0; begin <= sizes->size();) {
      const auto end = std::min(sizes->find(',', begin), sizes->size());
      const std::string item = sizes->substr(begin, end - begin);
      double v = 0;
      const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
      if (ec != std::errc() || ptr != item.data() + item.size() || !(v > 0.0 && v <= 1.0))
        throw std::invalid_argument("--edit-sizes expects shares in (0, 1] separated by commas, not '" + item + "'");
      s.edit_sizes.push_back(v);
      begin = end + 1;
    }
  }
  const std::string stages = args.get("stages").value_or("text_encoder,unet,vae,generation,edit,edit_sizes");
  for (std::size_t begin = 0; begin <= stages.size();) {
    const auto end = std::min(stages.find(',', begin), stages.size());
    const auto stage = stages.substr(begin, end - begin);
    if (stage != "text_encoder" && stage != "unet" && stage != "vae" && stage != "generation" && stage != "edit" && stage != "edit_sizes" &&
        stage != "live" && stage != "attention" && stage != "fidelity")
      throw std::invalid_argument("--stages: unknown stage '" + stage +
                                  "' (text_encoder, unet, vae, generation, edit, edit_sizes, live, attention, fidelity)");
    s.stages.insert(stage);
    begin = end + 1;
  }
  return s;
}

std::shared_ptr<const LoadedModel> load(const bench::Settings& s, nlohmann::json& about) {
  LoadedModel m;
  if (!s.model.empty()) {
    LoadOptions options;
    if (!s.config.empty()) options.config_dir = s.config;
    m = load_model(s.model, options);
    about = {{"source", m.source.string()}, {"random_weights", false}};
  } else {
    const auto preset = arch_preset(s.arch);
    m = random_model(preset);
    about = {{"source", "random weights"}, {"random_weights", true}, {"description", preset.description}};
  }
  if (!s.tokenizer.empty()) m.tokenizer_dir = s.tokenizer;
  about["arch"] = s.arch.empty() ? std::string(family_name(m.family)) : s.arch;
  about["family"] = family_name(m.family);
  about["prediction"] = prediction_name(m.prediction());
  about["parameters"] = {{"unet", parameter_count(m.unet_weights)},
                         {"text_encoder", parameter_count(m.text_encoder_weights)},
                         {"vae", parameter_count(m.vae_weights)}};
  about["weights_dtype"] = std::string(dtype_name(dominant_dtype(m.unet_weights)));
  about["tokenizer"] = m.tokenizer_dir ? m.tokenizer_dir->string() : "";
  return std::make_shared<const LoadedModel>(std::move(m));
}

// The edit-fidelity stage (bench/fidelity.h) on the whole model, after the timed stages.
nlohmann::json fidelity_stage(Backend& backend, const std::shared_ptr<const LoadedModel>& model,
                              const bench::Settings& s) {
  if (!model->tokenizer_dir) return {{"skipped", "no tokenizer: pass --tokenizer DIR"}};
  fidelity::Options options;
  options.cases = s.fidelity_cases;
  options.seed = s.fidelity_seed;
  options.steps = s.steps;
  options.cfg = s.cfg;
  // The model's own sampler unless one is named: the toy-world model ships DDIM, and DPM++ 2M at CFG
  // 7.5 overshoots on it (a purple house comes out blue, at CFG 12 burnt; DDIM is right at 4-12).
  options.scheduler = s.scheduler_given ? s.scheduler : std::string();
  options.examples_dir = s.fidelity_examples;
  options.mask_margin = s.mask_margin;
  options.detect_steps = s.detect_steps;
  options.progress = [](int done, int total) { std::fprintf(stderr, "fidelity: %d/%d cases\r", done, total); };
  StableDiffusion sd(model, backend);
  auto result = fidelity::run_fidelity(sd, options);
  std::fprintf(stderr, "\n");
  return result;
}

int run(int argc, char** argv) {
  auto s = parse(std::vector<std::string>(argv + 1, argv + argc));
  nlohmann::json report = {{"tool", "fisedit-bench"}, {"date", bench::utc_now()},
                           {"command", bench::command_line(argc, argv)}};
  const auto t0 = std::chrono::steady_clock::now();
  const auto model = load(s, report["model"]);
  report["model"]["load_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (s.width == 0) s.width = model->unet.sample_size * 8;
  if (s.height == 0) s.height = model->unet.sample_size * 8;
  if (s.width % 8 || s.height % 8) throw std::invalid_argument("--width and --height must be multiples of 8");

  auto backend = make_backend(s.device);
  report["device"] = {{"name", backend->name()}, {"kind", backend->kind() == DeviceKind::cuda ? "cuda" : "cpu"}};
  report["settings"] = {{"width", s.width},         {"height", s.height}, {"steps", s.steps},
                        {"scheduler", s.scheduler}, {"cfg", s.cfg},       {"cfg_batch", 2},
                        {"repeat", s.repeat},       {"warmup", s.warmup}, {"generations", s.generations},
                        {"stages", s.stages},       {"cache_device_budget", s.cache_device_budget},
                        {"cache_prefetch_depth", s.cache_prefetch_depth}};
  std::fprintf(stderr, "fisedit-bench: %s on %s, %dx%d\n", report["model"]["arch"].get<std::string>().c_str(),
               backend->name().c_str(), s.width, s.height);

  // One component on the device at a time, so each stage's memory is its own; generation last, with all.
  bench::Stages stages(*backend, model, s);
  auto& results = report["results"];
  const auto run_stage = [&](const char* stage, const char* key, nlohmann::json (bench::Stages::*measure)()) {
    results[key] = s.stages.count(stage) ? (stages.*measure)() : nlohmann::json{{"skipped", "not in --stages"}};
  };
  run_stage("text_encoder", "text_encoder", &bench::Stages::text_encoder);
  run_stage("unet", "unet_step", &bench::Stages::unet_step);
  run_stage("vae", "vae_decode", &bench::Stages::vae_decode);
  run_stage("generation", "generation", &bench::Stages::generation);
  run_stage("edit", "edit", &bench::Stages::edit_steps);
  run_stage("edit_sizes", "edit_sizes", &bench::Stages::edit_sizes);
  run_stage("live", "live", &bench::Stages::live_edit);
  run_stage("attention", "attention", &bench::Stages::attention);
  if (s.stages.count("fidelity")) results["fidelity"] = fidelity_stage(*backend, model, s);
  report["host_peak_rss_bytes"] = bench::host_peak_rss();

  bench::print_report(report, stdout);
  if (!s.json.empty()) {
    const auto text = report.dump(2) + "\n";
    AtomicFile file(s.json);
    file.write(reinterpret_cast<const std::byte*>(text.data()), text.size());
    file.commit();
  }
  // NaN or Inf in the image is a broken engine whatever the timings say: fail the run (and CTest).
  const auto& checks = results["generation"].value("checks", nlohmann::json::object());
  if (!checks.value("finite", true)) {
    std::fprintf(stderr, "fisedit-bench: the generated latents or image hold NaN or Inf\n");
    return 3;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  try {
    return run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "fisedit-bench: %s\n\n%s", e.what(), kUsage);
    return 2;
  } catch (const fisedit::Error& e) {
    std::fprintf(stderr, "fisedit-bench: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fisedit-bench: internal error: %s\n", e.what());
    return 1;
  }
}
