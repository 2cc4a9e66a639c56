// The toy world's renderer (render() in world.h): backgrounds and anti-aliased objects from distance fields.
#include "toyworld/world.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <span>
#include <stdexcept>

// Objects are signed distance fields in a unit box; a pixel's coverage is clamp(0.5 - distance in
// pixels), which anti-aliases edges at the cost of one field evaluation a pixel (no supersampling).
namespace fisedit::toyworld {
namespace {

struct Point {
  double x, y;
};

// Exact for any simple polygon, convex or not (winding by crossings).
double polygon_distance(std::span<const Point> v, double px, double py) {
  double d = (px - v[0].x) * (px - v[0].x) + (py - v[0].y) * (py - v[0].y);
  bool inside = false;
  for (std::size_t i = 0, j = v.size() - 1; i < v.size(); j = i++) {
    const double ex = v[j].x - v[i].x, ey = v[j].y - v[i].y;
    const double wx = px - v[i].x, wy = py - v[i].y;
    const double t = std::clamp((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0);
    const double bx = wx - ex * t, by = wy - ey * t;
    d = std::min(d, bx * bx + by * by);
    const bool c1 = py >= v[i].y, c2 = py < v[j].y, c3 = ex * wy > ey * wx;
    if ((c1 && c2 && c3) || (!c1 && !c2 && !c3)) inside = !inside;
  }
  return inside ? -std::sqrt(d) : std::sqrt(d);
}

double circle_distance(double cx, double cy, double r, double px, double py) {
  return std::hypot(px - cx, py - cy) - r;
}

constexpr Point kTriangle[] = {{0, -0.5}, {0.5, 0.5}, {-0.5, 0.5}};
constexpr Point kSquare[] = {{-0.5, -0.5}, {0.5, -0.5}, {0.5, 0.5}, {-0.5, 0.5}};
// Body and a roof with eaves, one outline so the silhouette has no seam.
constexpr Point kHouse[] = {{-0.36, 0.5}, {0.36, 0.5}, {0.36, 0.02}, {0.5, 0.02},
                            {0, -0.5},    {-0.5, 0.02}, {-0.36, 0.02}};
// The trunk shows a third of the height, so a pointed tree never reads as a triangle.
constexpr Point kTrunk[] = {{-0.11, 0.1}, {0.11, 0.1}, {0.11, 0.5}, {-0.11, 0.5}};
constexpr Point kPointedCrown[] = {{0, -0.5}, {0.4, 0.17}, {-0.4, 0.17}};
// Two sails standing on the hull, so the boat is one connected blob. The sails reach well into the
// hull: a union's distance is only a bound inside, and a seam near both parts' edges would get an outline.
constexpr Point kHull[] = {{-0.5, 0.22}, {0.5, 0.22}, {0.32, 0.5}, {-0.32, 0.5}};
constexpr Point kMainSail[] = {{0.04, -0.5}, {0.46, 0.22}, {0.3, 0.4}, {0.04, 0.4}};
constexpr Point kJib[] = {{-0.04, -0.4}, {-0.04, 0.4}, {-0.3, 0.4}, {-0.4, 0.22}};

std::array<Point, 10> make_star() {
  std::array<Point, 10> v{};
  const double outer = 0.52, inner = 0.23, cy = 0.02;  // a fat star stays a star at 34 px
  for (int i = 0; i < 10; ++i) {
    const double a = -std::numbers::pi / 2 + i * std::numbers::pi / 5;
    const double r = i % 2 == 0 ? outer : inner;
    v[i] = {r * std::cos(a), cy + r * std::sin(a)};
  }
  return v;
}

std::array<Point, 48> make_heart() {  // the classic parametric heart, fitted to the unit box
  std::array<Point, 48> v{};
  for (int i = 0; i < 48; ++i) {
    const double t = 2 * std::numbers::pi * i / 48;
    const double x = 16 * std::pow(std::sin(t), 3);
    const double y = -(13 * std::cos(t) - 5 * std::cos(2 * t) - 2 * std::cos(3 * t) - std::cos(4 * t));
    v[i] = {x / 32.5, (y - 2.6) / 29.5};
  }
  return v;
}

const std::array<Point, 10> kStar = make_star();
const std::array<Point, 48> kHeart = make_heart();

// Distances to the part drawn in the object's colour and to the part drawn darker (trunk, hull),
// the darker part's shade, and which part is drawn over the other where they overlap.
struct Parts {
  double main, dark = 1e9, dark_factor = 1.0;
  bool dark_above = false;
  bool dark_at_pixel() const {
    if (main > 0 && dark > 0) return dark < main;  // the anti-aliased fringe takes the nearer part
    return dark_above ? dark <= 0 : main > 0;
  }
};

Parts shape_parts(Shape s, int variant, double x, double y) {
  switch (s) {
    case Shape::circle: return {circle_distance(0, 0, 0.5, x, y)};
    case Shape::square: return {polygon_distance(kSquare, x, y)};
    case Shape::triangle: return {polygon_distance(kTriangle, x, y)};
    case Shape::star: return {polygon_distance(kStar, x, y)};
    case Shape::heart: return {polygon_distance(kHeart, x, y)};
    case Shape::house: return {polygon_distance(kHouse, x, y)};
    case Shape::tree: {
      const double crown = variant == 0 ? circle_distance(0, -0.14, 0.36, x, y)
                                        : polygon_distance(kPointedCrown, x, y);
      return {crown, polygon_distance(kTrunk, x, y), 0.6, false};
    }
    case Shape::boat:
      return {std::min(polygon_distance(kMainSail, x, y), polygon_distance(kJib, x, y)),
              polygon_distance(kHull, x, y), 0.85, true};
  }
  throw std::invalid_argument("toyworld: shape out of range");
}

// Smooth noise on a lattice of Cells x Cells over the image, values in [-1, 1], made a row at a time.
// Cells divides the image size, so every lattice cell spans the same pixels with the same weights and
// the row loop has fixed bounds (vectorised).
template <int Cells>
class ValueNoise {
  static_assert(kImageSize % Cells == 0);
  static constexpr int kSpan = kImageSize / Cells;

public:
  explicit ValueNoise(Rng& rng) {
    for (float& value : v_) value = static_cast<float>(2 * rng.uniform01() - 1);
    for (int j = 0; j < kSpan; ++j) {
      const double t = (j + 0.5) / kSpan;
      weight_[j] = static_cast<float>(t * t * (3 - 2 * t));
    }
  }
  void row(int y, std::array<float, kImageSize>& out) const {
    const int iy = y / kSpan;
    const float ty = weight_[y % kSpan];
    std::array<float, Cells + 1> lattice;
    for (int i = 0; i <= Cells; ++i) {
      const float a = v_[iy * (Cells + 1) + i], b = v_[(iy + 1) * (Cells + 1) + i];
      lattice[i] = a + (b - a) * ty;
    }
    for (int i = 0; i < Cells; ++i) {
      const float a = lattice[i], d = lattice[i + 1] - lattice[i];
      for (int j = 0; j < kSpan; ++j) out[i * kSpan + j] = a + d * weight_[j];
    }
  }

private:
  std::array<float, (Cells + 1) * (Cells + 1)> v_{};
  std::array<float, kSpan> weight_{};
};

// sin by table: ripples need one a pixel and no precision. Arguments are offset to stay positive, so
// truncation is floor.
float fast_sin(float a) {
  static const auto table = [] {
    std::array<float, 1024> t{};
    for (int i = 0; i < 1024; ++i) t[i] = static_cast<float>(std::sin(2 * std::numbers::pi * i / 1024));
    return t;
  }();
  constexpr float kTurn = static_cast<float>(1024 / (2 * std::numbers::pi));
  return table[static_cast<std::uint32_t>((a + 64 * std::numbers::pi_v<float>) * kTurn) & 1023];
}

// Per-pixel grain in [-1, 1]: a 32-bit hash rather than the Rng, so the background is one pass.
inline float grain(std::uint32_t seed, int x, int y) {
  std::uint32_t h = seed ^ (static_cast<std::uint32_t>(x) * 0x9E3779B1u) ^
                    (static_cast<std::uint32_t>(y) * 0x85EBCA77u);
  h ^= h >> 15;
  h *= 0x2C1B3C6Du;
  h ^= h >> 12;
  h *= 0x297A2D39u;
  h ^= h >> 15;
  return static_cast<float>(static_cast<std::int32_t>(h)) * (1.0f / 2147483648.0f);
}

using Rgb = std::array<double, 3>;

Rgb mix(const Rgb& a, const Rgb& b, double t) {
  return {a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t};
}

Rgb scaled(const Rgb& c, double f) { return {c[0] * f, c[1] * f, c[2] * f}; }

// min/max in float: branch-free and vectorised, where std::clamp's branches mispredict on noise.
inline std::uint8_t to_byte(float v) {
  return static_cast<std::uint8_t>(static_cast<int>(std::min(std::max(v + 0.5f, 0.0f), 255.0f)));
}
inline std::uint8_t to_byte(double v) { return to_byte(static_cast<float>(v)); }

// How a background varies along a row: its gradient colour, and how much soft noise, grain and
// ripples (sin of the height, bent by the noise) scale it.
struct RowStyle {
  Rgb base;
  double noise = 0, grain = 0, ripple = 0, ripple_phase = 0, ripple_bend = 0;
};

RowStyle row_style(Background b, double v, double wave_phase) {
  switch (b) {
    case Background::grass: return {mix({110, 172, 70}, {70, 132, 44}, v), 0.12, 0.05};
    case Background::sand: return {mix({228, 204, 150}, {208, 180, 122}, v), 0.05, 0.04, 0.02, 60 * v, 8};
    case Background::sea:
      return {mix({40, 112, 170}, {20, 70, 128}, v), 0.06, 0.02, 0.07, 90 * v + wave_phase, 6};
    case Background::sky: return {mix({88, 148, 224}, {150, 195, 238}, v), 0.04, 0.01};
    case Background::snow: return {mix({238, 242, 252}, {214, 224, 242}, v), 0.03, 0.015};
    case Background::night: return {mix({10, 14, 44}, {30, 36, 78}, v), 0.12, 0.04};
  }
  throw std::invalid_argument("toyworld: background out of range");
}

// A background: its palette as a vertical gradient, soft noise, grain and for sand and sea ripples.
// Grass and sea have a sky above a horizon in the top row of cells. Skies stay blue enough for a
// shaded white object to stand out.
void draw_background(Background b, Rng& rng, Image& image) {
  const double horizon = (b == Background::grass ? 0.08 + 0.08 * rng.uniform01()
                          : b == Background::sea ? 0.18 + 0.10 * rng.uniform01() : -1.0) * kImageSize;
  const ValueNoise<4> soft(rng);
  const ValueNoise<16> fine(rng);
  std::array<float, kImageSize> soft_row, fine_row;
  const auto grain_seed = static_cast<std::uint32_t>(rng.next());
  const double tint = std::clamp(0.015 * rng.normal(), -0.03, 0.03);  // warmer or colder, never another colour
  const double wave_phase = 2 * std::numbers::pi * rng.uniform01();
  for (int y = 0; y < kImageSize; ++y) {
    const double v = (y + 0.5) / kImageSize;
    soft.row(y, soft_row);
    fine.row(y, fine_row);
    RowStyle style = y < horizon ? RowStyle{mix({120, 175, 230}, {165, 205, 240}, y / horizon), 0.02}
                                 : row_style(b, v, wave_phase);
    style.base[0] *= 1 + tint;
    style.base[2] *= 1 - tint;
    // Simple float passes over the row, which the compiler vectorises: the scale of the row's colour
    // at each pixel, then the bytes.
    std::array<float, kImageSize> scale;
    const auto noise = static_cast<float>(style.noise), grain_amount = static_cast<float>(style.grain);
    for (int x = 0; x < kImageSize; ++x)
      scale[x] = 1 + noise * (0.7f * soft_row[x] + 0.3f * fine_row[x]) + grain_amount * grain(grain_seed, x, y);
    if (style.ripple != 0) {
      const auto ripple = static_cast<float>(style.ripple), phase = static_cast<float>(style.ripple_phase),
                 bend = static_cast<float>(style.ripple_bend);
      for (int x = 0; x < kImageSize; ++x)
        scale[x] += ripple * fast_sin(phase + bend * (0.7f * soft_row[x] + 0.3f * fine_row[x]));
    }
    const std::array<float, 3> base = {static_cast<float>(style.base[0]), static_cast<float>(style.base[1]),
                                       static_cast<float>(style.base[2])};
    std::array<float, kImageSize * 3> channels;
    for (int x = 0; x < kImageSize; ++x)
      for (int k = 0; k < 3; ++k) channels[3 * x + k] = base[k] * scale[x];
    std::uint8_t* p = &image.rgb[static_cast<std::size_t>(y) * kImageSize * 3];
    for (int i = 0; i < kImageSize * 3; ++i) p[i] = to_byte(channels[i]);
  }
  if (b == Background::night) {  // a few small stars: too small to be read as objects
    const int stars = 12 + rng.uniform(16);
    for (int i = 0; i < stars; ++i) {
      const int x = rng.uniform(kImageSize), y = rng.uniform(kImageSize);
      const double bright = 0.5 + 0.5 * rng.uniform01();
      std::uint8_t* p = &image.rgb[(static_cast<std::size_t>(y) * kImageSize + x) * 3];
      const Rgb star = {235, 232, 205};
      for (int k = 0; k < 3; ++k) p[k] = to_byte(p[k] + (star[k] - p[k]) * bright);
    }
  }
}

void draw_object(const Object& object, Rng& rng, int max_jitter, Image& image) {
  const CellRect cell = cell_rect(object.cell);
  const double side = size_fraction(object.size) * kImageSize / 3.0;
  const double cx = (cell.x0 + cell.x1) / 2.0 + rng.uniform(2 * max_jitter + 1) - max_jitter;
  const double cy = (cell.y0 + cell.y1) / 2.0 + rng.uniform(2 * max_jitter + 1) - max_jitter;
  const bool outline = rng.uniform01() < 0.35;
  const double light = 2 * std::numbers::pi * rng.uniform01();
  const double lx = std::cos(light), ly = std::sin(light);
  const int variant = rng.uniform(shape_variants(object.shape));
  const auto rgb = colour_rgb(object.colour);
  const Rgb fill = {double(rgb[0]), double(rgb[1]), double(rgb[2])};

  const bool has_dark_part = object.shape == Shape::tree || object.shape == Shape::boat;
  const double dark_factor = shape_parts(object.shape, variant, 0, 0).dark_factor;
  const auto shade = [&](int px, int py, double d, bool dark) {
    const double x = (px + 0.5 - cx) / side, y = (py + 0.5 - cy) / side;
    Rgb c = dark ? scaled(fill, dark_factor) : fill;
    if (outline) {
      c = mix(scaled(c, 0.55), c, std::clamp(-d - 1.5, 0.0, 1.0));  // 2 px darker rim
    } else {
      c = scaled(c, 1 + 0.12 * std::clamp(2 * (x * lx + y * ly), -1.0, 1.0));
    }
    const double coverage = std::clamp(0.5 - d, 0.0, 1.0);
    std::uint8_t* p = &image.rgb[(static_cast<std::size_t>(py) * kImageSize + px) * 3];
    for (int k = 0; k < 3; ++k) p[k] = to_byte(p[k] + (c[k] - p[k]) * coverage);
  };
  const auto distance = [&](double px, double py, bool* dark) {
    const Parts parts = shape_parts(object.shape, variant, (px - cx) / side, (py - cy) / side);
    if (dark) *dark = parts.dark_at_pixel();
    return std::min(parts.main, parts.dark) * side;  // pixels
  };

  // 4x4 blocks: the distance is 1-Lipschitz (a lower bound inside a union), so one evaluation at the
  // block's centre settles blocks wholly outside, or inside and clear of the rim.
  constexpr int kBlock = 4;
  constexpr double kReach = 2.13;  // block centre to its farthest pixel centre
  const int x0 = std::max(0, static_cast<int>(cx - side / 2) - 2);
  const int x1 = std::min(kImageSize, static_cast<int>(cx + side / 2) + 3);
  const int y0 = std::max(0, static_cast<int>(cy - side / 2) - 2);
  const int y1 = std::min(kImageSize, static_cast<int>(cy + side / 2) + 3);
  for (int by = y0; by < y1; by += kBlock) {
    for (int bx = x0; bx < x1; bx += kBlock) {
      const int ex = std::min(bx + kBlock, x1), ey = std::min(by + kBlock, y1);
      const double centre = distance((bx + ex) / 2.0, (by + ey) / 2.0, nullptr);
      if (centre > kReach + 0.5) continue;
      const bool deep = centre < -(kReach + 3.5);
      for (int py = by; py < ey; ++py) {
        for (int px = bx; px < ex; ++px) {
          bool dark = false;
          if (deep) {
            if (has_dark_part) distance(px + 0.5, py + 0.5, &dark);
            shade(px, py, -10.0, dark);
          } else {
            const double d = distance(px + 0.5, py + 0.5, &dark);
            if (d < 0.5) shade(px, py, d, dark);
          }
        }
      }
    }
  }
}

}  // namespace

int shape_variants(Shape s) { return s == Shape::tree ? 2 : 1; }

double shape_distance(Shape s, int variant, double x, double y) {
  const Parts parts = shape_parts(s, variant, x, y);
  return std::min(parts.main, parts.dark);
}

Image render(const Scene& scene, const RenderOptions& options) {
  if (options.max_jitter < 0 || options.max_jitter > 8)
    throw std::invalid_argument("toyworld: max_jitter must be in [0, 8]");
  Image image{kImageSize, kImageSize, std::vector<std::uint8_t>(std::size_t{kImageSize} * kImageSize * 3)};
  Rng rng(options.seed);
  draw_background(scene.background, rng, image);
  for (const Object& object : scene.objects) draw_object(object, rng, options.max_jitter, image);
  return image;
}

}  // namespace fisedit::toyworld
