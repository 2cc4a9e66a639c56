// The benchmark's figures (fidelity.h): per case and summarised as JSON, the table fisedit-bench
// prints from that JSON (so the two never disagree), and the example triples.
#include "bench/fidelity.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fisedit::fidelity {
namespace {

using nlohmann::json;

json optional(const std::optional<double>& v) { return v ? json(*v) : json(); }
json optional(const std::optional<bool>& v) { return v ? json(*v) : json(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0 : std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
}

// Shares and means over one method's scores; figures without a value anywhere are null.
json aggregate(const std::vector<const MethodScore*>& scores) {
  std::vector<double> success, preserved, kept, identical, iou, outside, fraction, ms;
  for (const MethodScore* s : scores) {
    success.push_back(s->success);
    preserved.push_back(s->preserved);
    if (s->preserved_outside_mask) kept.push_back(*s->preserved_outside_mask);
    if (s->iou) {
      identical.push_back(s->identical_outside_region);
      iou.push_back(*s->iou);
      fraction.push_back(*s->fraction);
    }
    if (s->outside) outside.push_back(*s->outside);
    ms.push_back(s->ms);
  }
  const auto or_null = [](const std::vector<double>& v, double x) { return v.empty() ? json() : json(x); };
  return {{"n", scores.size()},
          {"success", mean(success)},
          {"preserved", mean(preserved)},
          {"preserved_outside_mask", or_null(kept, mean(kept))},
          {"preserved_outside_mask_n", kept.size()},
          {"identical_outside_region", or_null(identical, mean(identical))},
          {"iou_mean", or_null(iou, mean(iou))},
          {"iou_median", or_null(iou, median(iou))},
          {"outside_mean", or_null(outside, mean(outside))},
          {"empty_masks", iou.size() - outside.size()},
          {"fraction_mean", or_null(fraction, mean(fraction))},
          {"ms_median", median(ms)},
          {"ms_mean", mean(ms)}};
}

// Shares of base images the model drew right (BaseQuality).
json generation_quality(const std::vector<const CaseResult*>& results) {
  std::vector<double> colours, shapes, sizes, no_extra, background, right;
  for (const CaseResult* r : results) {
    const BaseQuality& q = r->quality;
    colours.push_back(q.colours);
    shapes.push_back(q.shapes);
    sizes.push_back(q.sizes);
    no_extra.push_back(q.no_extra);
    background.push_back(q.background);
    right.push_back(q.objects_right);
  }
  return {{"n", results.size()},  {"colours", mean(colours)},   {"shapes", mean(shapes)},
          {"sizes", mean(sizes)}, {"no_extra", mean(no_extra)}, {"background", mean(background)},
          {"objects_right", mean(right)}};
}

void put(Image8& out, int x, int y, std::uint8_t r, std::uint8_t g, std::uint8_t b) {
  auto* p = &out.pixels[(static_cast<std::size_t>(y) * out.width + x) * 3];
  p[0] = r, p[1] = g, p[2] = b;
}

}  // namespace

json to_json(const CaseResult& r) {
  const EditCase& c = r.edit_case;
  const BaseQuality& q = r.quality;
  json methods = json::object();
  for (const Method m : kAllMethods) {
    const MethodScore& s = r.methods[static_cast<std::size_t>(m)];
    if (!s.ran) continue;
    json j = {{"success", s.success}, {"preserved", s.preserved},
              {"preserved_outside_mask", optional(s.preserved_outside_mask)}, {"ms", s.ms}};
    if (m != Method::regenerate) {
      j["identical_outside_region"] = s.identical_outside_region;
      j["iou"] = optional(s.iou);
      j["outside"] = optional(s.outside);
      j["fraction"] = optional(s.fraction);
    }
    methods[std::string(method_name(m))] = std::move(j);
  }
  return {{"index", c.index},
          {"kind", kind_name(c.kind)},
          {"cell", c.cell >= 0 ? json(toyworld::position_name(c.cell)) : json()},
          {"seed", c.seed},
          {"base_prompt", toyworld::prompt(c.base)},
          {"edit_prompt", toyworld::prompt(c.edited)},
          {"base_ms", r.base_ms},
          {"base_quality", {{"colours", q.colours}, {"shapes", q.shapes}, {"sizes", q.sizes},
                            {"no_extra", q.no_extra}, {"background", q.background},
                            {"objects_right", q.objects_right}}},
          {"methods", std::move(methods)}};
}

json summarize(const std::vector<CaseResult>& results) {
  std::vector<const CaseResult*> all;
  std::array<std::vector<const CaseResult*>, toyworld::kMaxObjects + 1> by_objects;
  std::vector<double> base_ms;
  for (const CaseResult& r : results) {
    all.push_back(&r);
    by_objects[r.edit_case.base.objects.size()].push_back(&r);
    base_ms.push_back(r.base_ms);
  }
  json generation = generation_quality(all);
  generation["targets"] = {{"colours", 0.90}, {"shapes", 0.80}};
  // Prompts of one object are few (about 13,000): training met most of them with other images, so the
  // figures of two and three objects are the ones on prompts it never saw.
  for (int n = 1; n <= toyworld::kMaxObjects; ++n)
    if (!by_objects[static_cast<std::size_t>(n)].empty())
      generation["by_objects"][std::to_string(n)] = generation_quality(by_objects[static_cast<std::size_t>(n)]);
  json summary = {{"cases", results.size()}, {"generation", std::move(generation)}, {"base_ms_median", median(base_ms)}};
  json methods = json::object();
  for (const Method m : kAllMethods) {
    std::vector<const MethodScore*> scores;
    std::array<std::vector<const MethodScore*>, kEditKinds> by_kind;
    for (const CaseResult& r : results) {
      const MethodScore& s = r.methods[static_cast<std::size_t>(m)];
      if (!s.ran) continue;
      scores.push_back(&s);
      by_kind[static_cast<std::size_t>(r.edit_case.kind)].push_back(&s);
    }
    if (scores.empty()) continue;
    json j = aggregate(scores);
    for (int k = 0; k < kEditKinds; ++k)
      if (!by_kind[static_cast<std::size_t>(k)].empty())
        j["by_kind"][std::string(kind_name(static_cast<EditKind>(k)))] = aggregate(by_kind[static_cast<std::size_t>(k)]);
    methods[std::string(method_name(m))] = std::move(j);
  }
  // A full generation as a user pays for it: the baseline's fresh generation where it ran, else the
  // cached base generation (which also keeps the activations, so is a little slower).
  const double generation_ms = methods.contains("regenerate") ? methods["regenerate"]["ms_median"].get<double>()
                                                              : median(base_ms);
  for (auto& [name, j] : methods.items()) j["time_vs_generation"] = j["ms_median"].get<double>() / generation_ms;
  summary["generation_ms_median"] = generation_ms;
  summary["methods"] = std::move(methods);
  return summary;
}

Image8 example_triple(const CaseImages& images, const EditCase& c) {
  constexpr int kGap = 4;
  const int w = images.base.width, h = images.base.height;
  Image8 out{3 * w + 2 * kGap, h, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(3 * w + 2 * kGap) * h * 3, 255)};
  const Image8& edit = images.edits[static_cast<std::size_t>(Method::automatic)];
  const Image8& region = images.changed_regions[static_cast<std::size_t>(Method::automatic)];
  const Image8 truth = truth_region(c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * w + x;
      const auto* b = &images.base.pixels[i * 3];
      const auto* e = &edit.pixels[i * 3];
      put(out, x, y, b[0], b[1], b[2]);
      put(out, 2 * (w + kGap) + x, y, e[0], e[1], e[2]);
      // As the app's canvas shows it: what the edit kept dimmed, what it re-rendered tinted cyan.
      const bool changed = region.pixels[i] != 0;
      const auto shade = [&](int v, int tint) { return static_cast<std::uint8_t>(changed ? (v * 4 + tint) / 5 : v / 3); };
      put(out, w + kGap + x, y, shade(b[0], 80), shade(b[1], 220), shade(b[2], 255));
      // The ground truth's border in yellow, two pixels wide: truth pixels near a non-truth one.
      const auto truth_at = [&](int tx, int ty) {
        return tx < 0 || ty < 0 || tx >= w || ty >= h || truth.pixels[static_cast<std::size_t>(ty) * w + tx] != 0;
      };
      bool border = false;
      for (int d = 1; d <= 2; ++d)
        border = border || !(truth_at(x - d, y) && truth_at(x + d, y) && truth_at(x, y - d) && truth_at(x, y + d));
      if (truth.pixels[i] && border) put(out, w + kGap + x, y, 255, 220, 0);
    }
  return out;
}

}  // namespace fisedit::fidelity
