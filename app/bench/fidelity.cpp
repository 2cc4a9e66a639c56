// The benchmark's runs and scores (fidelity.h): one cached base generation per case, its three edits
// and the regeneration baseline, every image read back by the toy-world analyser.
#include "bench/fidelity.h"

#include "toyworld/analyse.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

namespace fisedit::fidelity {
namespace {

using namespace toyworld;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

ImageReading read(const Image8& image) {
  return analyse(toyworld::Image{image.width, image.height, image.pixels});
}

// The same thing in a cell, as far as preservation asks: presence, and then colour and shape.
bool same_content(const CellReading& a, const CellReading& b) {
  if (a.present != b.present) return false;
  return !a.present || (a.colour == b.colour && a.shape == b.shape);
}

bool edit_succeeded(const EditCase& c, const ImageReading& edited) {
  if (c.kind == EditKind::background) return edited.background == c.edited.background;
  const CellReading& cell = edited.cells[static_cast<std::size_t>(c.cell)];
  const Object* want = c.edited.object_at(c.cell);
  switch (c.kind) {
    case EditKind::recolour: return cell.present && cell.colour == want->colour;
    case EditKind::reshape: return cell.present && cell.shape == want->shape;
    case EditKind::resize: return cell.present && cell.size == want->size;
    case EditKind::add: return cell.present && cell.colour == want->colour && cell.shape == want->shape;
    case EditKind::remove: return !cell.present;
    case EditKind::background: break;
  }
  return false;
}

bool region_touches(const Image8& region, int cell) {
  const CellRect r = cell_rect(cell);
  for (int y = r.y0; y < r.y1; ++y)
    for (int x = r.x0; x < r.x1; ++x)
      if (region.pixels[static_cast<std::size_t>(y) * region.width + x]) return true;
  return false;
}

bool same_pixels(const Image8& a, const Image8& b, int cell) {
  const CellRect r = cell_rect(cell);
  for (int y = r.y0; y < r.y1; ++y) {
    const auto row = (static_cast<std::size_t>(y) * a.width + r.x0) * 3;
    if (!std::equal(a.pixels.begin() + row, a.pixels.begin() + row + (r.x1 - r.x0) * 3, b.pixels.begin() + row))
      return false;
  }
  return true;
}

// Cell by cell against the base image's reading (not the prompt: a base the model drew wrong is
// still what the user wants kept). A cell whose pixels are the base's is kept whatever the analyser
// says: it models the background from every cell of a row, so an object added beside an ambiguous
// one (a blob halfway between two shapes) can tip that one's reading without a pixel of it changing.
// `changed_region` (edits) also gives the share over the cells it leaves alone.
void score_preservation(const EditCase& c, const Image8& base_image, const ImageReading& base, const Image8& image,
                        const ImageReading& edited, const Image8* changed_region, MethodScore& s) {
  s.preserved = true;
  bool outside = true;
  int untouched = 0;
  for (int cell = 0; cell < kCells; ++cell) {
    if (cell == c.cell) continue;
    const auto i = static_cast<std::size_t>(cell);
    const bool same = same_pixels(base_image, image, cell) || same_content(base.cells[i], edited.cells[i]);
    s.preserved = s.preserved && same;
    if (changed_region && !region_touches(*changed_region, cell)) {
      ++untouched;
      outside = outside && same;
    }
  }
  if (untouched > 0) s.preserved_outside_mask = outside;
}

// The latent mask scaled to pixels (each latent pixel an 8x8 block, as the app's "N% re-rendered"
// counts it) against the ground truth.
void score_mask(const LatentMask& mask, const Image8& truth, MethodScore& s) {
  std::int64_t inside = 0, active = 0, truth_pixels = 0;
  for (int y = 0; y < truth.height; ++y)
    for (int x = 0; x < truth.width; ++x) {
      const bool t = truth.pixels[static_cast<std::size_t>(y) * truth.width + x] != 0;
      const bool m = mask.values[static_cast<std::size_t>((y / 8) * mask.width + x / 8)] > 0.5f;
      truth_pixels += t;
      active += m;
      inside += t && m;
    }
  const std::int64_t united = truth_pixels + active - inside;
  s.iou = united > 0 ? double(inside) / double(united) : 0.0;
  if (active > 0) s.outside = double(active - inside) / double(active);
  s.fraction = mask.fraction();
}

bool identical_outside(const Image8& base, const Image8& edited, const Image8& changed_region) {
  for (std::size_t i = 0; i < changed_region.pixels.size(); ++i)
    if (!changed_region.pixels[i])
      for (std::size_t ch = 0; ch < 3; ++ch)
        if (base.pixels[i * 3 + ch] != edited.pixels[i * 3 + ch]) return false;
  return true;
}

}  // namespace

BaseQuality base_quality(const Scene& scene, const ImageReading& reading) {
  const SceneCheck checked = check(reading, scene);
  BaseQuality q{true, true, true, true, checked.background, checked.objects_right()};
  for (int cell = 0; cell < kCells; ++cell) {
    const CellCheck& c = checked.cells[static_cast<std::size_t>(cell)];
    if (!scene.object_at(cell)) {
      q.no_extra = q.no_extra && c.presence;
      continue;
    }
    q.colours = q.colours && c.colour;  // false where the object is missing
    q.shapes = q.shapes && c.shape;
    q.sizes = q.sizes && c.size;
  }
  return q;
}

void score_image(const EditCase& c, const Image8& base_image, const ImageReading& base, const Image8& edited,
                 const Image8* changed_region, MethodScore& s) {
  const ImageReading reading = read(edited);
  s.success = edit_succeeded(c, reading);
  score_preservation(c, base_image, base, edited, reading, changed_region, s);
}

CaseResult run_case(StableDiffusion& sd, const EditCase& c, const Options& options, CaseImages* images) {
  GenerationRequest r;
  r.prompt = prompt(c.base);
  r.seed = c.seed;
  r.steps = options.steps;
  r.cfg_scale = options.cfg;
  r.scheduler = options.scheduler;
  r.width = r.height = kImageSize;  // the analyser's grid
  r = sd.resolve(r);

  CaseResult out;
  out.edit_case = c;
  auto t0 = Clock::now();
  const CachedGeneration base = sd.generate_cached(r);
  out.base_ms = ms_since(t0);
  const ImageReading base_read = read(base.result.image);
  out.quality = base_quality(c.base, base_read);
  const Image8 truth = truth_region(c);
  if (images) images->base = base.result.image;

  for (const Method m : kAllMethods) {
    if (m == Method::regenerate && !options.regenerate) continue;
    MethodScore& s = out.methods[static_cast<std::size_t>(m)];
    s.ran = true;
    Image8 image, changed;
    if (m == Method::regenerate) {
      GenerationRequest fresh = r;
      fresh.prompt = prompt(c.edited);
      t0 = Clock::now();
      image = sd.generate(fresh).image;
      s.ms = ms_since(t0);
    } else {
      EditRequest e;
      e.prompt = prompt(c.edited);
      e.negative_prompt = r.negative_prompt;
      e.attention_control = m == Method::automatic_attention;
      if (m == Method::painted) {
        e.mask_mode = MaskMode::painted;
        e.painted_mask = truth;
      } else {
        e.margin = options.mask_margin;
        e.whole_image_if_global = kDefaultWholeImageIfGlobal;
        e.detect_steps = options.detect_steps;
      }
      t0 = Clock::now();
      EditResult edit = sd.edit(base, e);
      s.ms = ms_since(t0);
      score_mask(edit.mask, truth, s);
      image = std::move(edit.generation.result.image);
      changed = std::move(edit.changed_region);
      s.identical_outside_region = identical_outside(base.result.image, image, changed);
    }
    score_image(c, base.result.image, base_read, image, m == Method::regenerate ? nullptr : &changed, s);
    if (images) {
      images->edits[static_cast<std::size_t>(m)] = std::move(image);
      images->changed_regions[static_cast<std::size_t>(m)] = std::move(changed);
    }
  }
  return out;
}

json run_fidelity(StableDiffusion& sd, const Options& options) {
  const auto cases = make_cases(options.cases, options.seed);
  if (options.warmup && !cases.empty()) {
    Options once = options;
    once.regenerate = false;
    run_case(sd, cases.front(), once);
  }
  if (!options.examples_dir.empty()) std::filesystem::create_directories(options.examples_dir);
  std::array<int, kEditKinds> examples{};
  std::vector<CaseResult> results;
  json per_case = json::array();
  for (const EditCase& c : cases) {
    int& written = examples[static_cast<std::size_t>(c.kind)];
    const bool example = !options.examples_dir.empty() && written < options.examples_per_kind;
    CaseImages images;
    results.push_back(run_case(sd, c, options, example ? &images : nullptr));
    per_case.push_back(to_json(results.back()));
    if (example) {
      char name[64];
      std::snprintf(name, sizeof name, "fidelity-%03d-%s.png", c.index, std::string(kind_name(c.kind)).c_str());
      write_png(options.examples_dir / name, example_triple(images, c),
                {{"Description", "base | changed region (ground truth outlined) | edit\nbase: " + prompt(c.base) +
                                     "\nedit: " + prompt(c.edited)}});
      ++written;
    }
    if (options.progress) options.progress(static_cast<int>(results.size()), static_cast<int>(cases.size()));
  }
  const auto& model = sd.model();
  GenerationRequest sampler;
  sampler.scheduler = options.scheduler;
  const std::string resolved_scheduler = sd.resolve(sampler).scheduler;
  return {{"settings", {{"cases", options.cases}, {"seed", options.seed}, {"steps", options.steps},
                        {"cfg", options.cfg}, {"scheduler", resolved_scheduler},
                        {"width", kImageSize},
                        {"height", kImageSize}, {"regenerate", options.regenerate},
                        {"mask_margin", options.mask_margin}, {"detect_steps", options.detect_steps},
                        {"model", model.source.string()}}},
          {"summary", summarize(results)},
          {"cases", std::move(per_case)}};
}

}  // namespace fisedit::fidelity
