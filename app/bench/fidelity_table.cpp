// fisedit-bench's fidelity table, printed from results.fidelity (fidelity.h).
#include "bench/fidelity.h"

#include <string>

namespace fisedit::fidelity {
namespace {

using nlohmann::json;

// "93.5%", or "-" for a figure that does not apply.
std::string percent(const json& v) {
  if (!v.is_number()) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * v.get<double>());
  return buf;
}

std::string fixed(const json& v, const char* format) {
  if (!v.is_number()) return "-";
  char buf[16];
  std::snprintf(buf, sizeof buf, format, v.get<double>());
  return buf;
}

constexpr const char* kLabels[kMethods] = {"(a) auto mask", "(b) auto + attention", "(c) painted = truth",
                                           "(d) regenerate"};

}  // namespace

void print_fidelity(const json& f, std::FILE* out) {
  const json& s = f["settings"];
  const json& sum = f["summary"];
  std::fprintf(out, "\nedit fidelity: %d toy-world cases (seed %llu), %dx%d, %d steps %s, CFG %.1f",
               sum["cases"].get<int>(), s["seed"].get<unsigned long long>(), s["width"].get<int>(), s["height"].get<int>(), s["steps"].get<int>(),
               s["scheduler"].get<std::string>().c_str(), s["cfg"].get<double>());
  const int detect = s.value("detect_steps", -1);
  std::fprintf(out, "; automatic masks: margin %d, %s detection steps\n", s.value("mask_margin", 0),
               detect < 0 ? "default" : std::to_string(detect).c_str());
  const json& g = sum["generation"];
  std::fprintf(out,
               "  base images (seeds held out from training): objects in place with the right colour %s (target 90%%),\n"
               "    shape %s (target 80%%), size %s; no extra object %s; background %s; everything but sizes %s\n",
               percent(g["colours"]).c_str(), percent(g["shapes"]).c_str(), percent(g["sizes"]).c_str(),
               percent(g["no_extra"]).c_str(), percent(g["background"]).c_str(), percent(g["objects_right"]).c_str());
  if (g.contains("by_objects")) {
    std::fprintf(out, "    by objects in the prompt (two and three: almost all prompts training never saw):");
    const char* separator = " ";
    for (const auto& [n, q] : g["by_objects"].items()) {
      std::fprintf(out, "%s%s: colour %s, shape %s (%d cases)", separator, n.c_str(), percent(q["colours"]).c_str(),
                   percent(q["shapes"]).c_str(), q["n"].get<int>());
      separator = "; ";
    }
    std::fprintf(out, "\n");
  }
  std::fprintf(out, "  a full generation: %.1f ms (median; the cached base generation %.1f ms)\n\n",
               sum["generation_ms_median"].get<double>(), sum["base_ms_median"].get<double>());

  const json& methods = sum["methods"];
  std::fprintf(out, "  %-22s %8s %9s %9s %9s %7s %8s %11s %10s %8s\n", "method", "success", "preserved",
               "kept out", "identical", "IoU", "outside", "re-render", "ms median", "vs gen.");
  for (const Method m : kAllMethods) {
    const std::string name(method_name(m));
    if (!methods.contains(name)) continue;
    const json& j = methods[name];
    std::fprintf(out, "  %-22s %8s %9s %9s %9s %7s %8s %11s %10.1f %7.2fx\n", kLabels[static_cast<int>(m)],
                 percent(j["success"]).c_str(), percent(j["preserved"]).c_str(),
                 percent(j["preserved_outside_mask"]).c_str(), percent(j["identical_outside_region"]).c_str(),
                 fixed(j["iou_mean"], "%.3f").c_str(), percent(j["outside_mean"]).c_str(),
                 percent(j["fraction_mean"]).c_str(), j["ms_median"].get<double>(), j["time_vs_generation"].get<double>());
  }
  std::fprintf(out, "  (kept out: preservation over the cells the changed region leaves alone, 100%% by construction;\n"
                    "  identical: every pixel outside it is the base's; IoU, outside: the latent mask against the truth)\n");

  std::fprintf(out, "\n  %-22s", "success / IoU by kind");
  for (int k = 0; k < kEditKinds; ++k) std::fprintf(out, " %15s", std::string(kind_name(static_cast<EditKind>(k))).c_str());
  std::fprintf(out, "\n");
  for (const Method m : kAllMethods) {
    const std::string name(method_name(m));
    if (!methods.contains(name)) continue;
    std::fprintf(out, "  %-22s", kLabels[static_cast<int>(m)]);
    for (int k = 0; k < kEditKinds; ++k) {
      const std::string kind(kind_name(static_cast<EditKind>(k)));
      const json& by = methods[name].value("by_kind", json::object());
      if (!by.contains(kind)) {
        std::fprintf(out, " %15s", "-");
        continue;
      }
      const std::string cell = percent(by[kind]["success"]) + " / " + fixed(by[kind]["iou_mean"], "%.2f");
      std::fprintf(out, " %15s", cell.c_str());
    }
    std::fprintf(out, "\n");
  }
}

}  // namespace fisedit::fidelity
