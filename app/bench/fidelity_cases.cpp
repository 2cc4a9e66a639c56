// The benchmark's edit cases and their ground truth (fidelity.h).
#include "bench/fidelity.h"

#include <algorithm>
#include <stdexcept>

namespace fisedit::fidelity {
namespace {

using namespace toyworld;

// A value of an enum of `count` values other than `old`, drawn uniformly.
template <class E>
E other_than(Rng& rng, E old, int count) {
  const int v = rng.uniform(count - 1);
  return static_cast<E>(v >= static_cast<int>(old) ? v + 1 : v);
}

Colour visible_colour(Rng& rng, Background b) {
  Colour c = static_cast<Colour>(rng.uniform(kColours));
  while (hard_to_see(c, b)) c = static_cast<Colour>(rng.uniform(kColours));
  return c;
}

bool visible_on(const Scene& scene, Background b) {
  return std::none_of(scene.objects.begin(), scene.objects.end(),
                      [&](const Object& o) { return hard_to_see(o.colour, b); });
}

// The edit of `kind` applied to c.base, drawn from rng; false when the base does not allow it (an add
// into three objects, a remove from one), and the caller draws another base.
bool draw_edit(Rng& rng, EditKind kind, EditCase& c) {
  Scene& e = c.edited;
  e = c.base;
  const int n = static_cast<int>(e.objects.size());
  switch (kind) {
    case EditKind::recolour: {
      Object& o = e.objects[rng.uniform(n)];
      Colour colour = other_than(rng, o.colour, kColours);
      while (hard_to_see(colour, e.background)) colour = other_than(rng, o.colour, kColours);
      o.colour = colour;
      c.cell = o.cell;
      return true;
    }
    case EditKind::reshape: {
      Object& o = e.objects[rng.uniform(n)];
      o.shape = other_than(rng, o.shape, kShapes);
      c.cell = o.cell;
      return true;
    }
    case EditKind::resize: {
      Object& o = e.objects[rng.uniform(n)];
      o.size = other_than(rng, o.size, kSizes);
      c.cell = o.cell;
      return true;
    }
    case EditKind::add: {
      if (n >= kMaxObjects) return false;
      std::vector<int> free;
      for (int cell = 0; cell < kCells; ++cell)
        if (!e.object_at(cell)) free.push_back(cell);
      Object o;
      o.cell = free[static_cast<std::size_t>(rng.uniform(static_cast<int>(free.size())))];
      o.shape = static_cast<toyworld::Shape>(rng.uniform(kShapes));
      o.size = static_cast<Size>(rng.uniform(kSizes));
      o.colour = visible_colour(rng, e.background);
      e.objects.push_back(o);  // appended: the words before it stay as they were
      c.cell = o.cell;
      return true;
    }
    case EditKind::remove: {
      if (n < 2) return false;
      const int i = rng.uniform(n);
      c.cell = e.objects[static_cast<std::size_t>(i)].cell;
      e.objects.erase(e.objects.begin() + i);
      return true;
    }
    case EditKind::background: {
      // One always remains: the hard-to-see pairs hide at most four backgrounds from three objects
      // (blue two, green, black or white one each), and the old one is not among them.
      Background b = other_than(rng, e.background, kBackgrounds);
      while (!visible_on(e, b)) b = other_than(rng, e.background, kBackgrounds);
      e.background = b;
      c.cell = -1;
      return true;
    }
  }
  throw std::invalid_argument("fidelity: edit kind out of range");
}

}  // namespace

std::string_view kind_name(EditKind k) {
  static constexpr std::array<std::string_view, kEditKinds> names = {"recolour", "reshape", "resize",
                                                                     "add",      "remove",  "background"};
  return names.at(static_cast<std::size_t>(k));
}

std::string_view method_name(Method m) {
  static constexpr std::array<std::string_view, kMethods> names = {"auto", "auto_attention", "painted", "regenerate"};
  return names.at(static_cast<std::size_t>(m));
}

std::vector<EditCase> make_cases(int n, std::uint64_t seed) {
  Rng rng(seed);
  const SceneOptions no_hard_pairs{.keep_hard_to_see = 0.0};
  std::vector<EditCase> cases;
  for (int i = 0; i < n; ++i) {
    EditCase c;
    c.index = i;
    c.kind = static_cast<EditKind>(i % kEditKinds);
    do c.base = random_scene(rng, no_hard_pairs);
    while (!draw_edit(rng, c.kind, c));
    // 31 bits: a seed a user can type into the app to see the same base image.
    c.seed = rng.next() >> 33;
    cases.push_back(std::move(c));
  }
  return cases;
}

Image8 truth_region(const EditCase& c) {
  Image8 region{kImageSize, kImageSize, 1, std::vector<std::uint8_t>(std::size_t{kImageSize} * kImageSize, 0)};
  const auto fill = [&](int cell, std::uint8_t value) {
    const CellRect r = cell_rect(cell);
    for (int y = r.y0; y < r.y1; ++y)
      std::fill_n(region.pixels.begin() + static_cast<std::ptrdiff_t>(y) * kImageSize + r.x0, r.x1 - r.x0, value);
  };
  if (c.kind != EditKind::background) {
    fill(c.cell, 255);
    return region;
  }
  std::fill(region.pixels.begin(), region.pixels.end(), std::uint8_t{255});
  for (const Object& o : c.base.objects) fill(o.cell, 0);
  return region;
}

}  // namespace fisedit::fidelity
