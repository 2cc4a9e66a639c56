// The toy world's scenes (world.h): names, the prompt grammar and its parser, random scenes, the generator.
#include "toyworld/world.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace fisedit::toyworld {
namespace {

constexpr std::array<std::string_view, kShapes> kShapeNames = {
    "circle", "square", "triangle", "star", "heart", "house", "tree", "boat"};
constexpr std::array<std::string_view, kColours> kColourNames = {
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "white", "black", "brown"};
constexpr std::array<std::string_view, kSizes> kSizeNames = {"small", "", "big"};
constexpr std::array<std::string_view, kBackgrounds> kBackgroundNames = {
    "grass", "sand", "sea", "sky", "snow", "night"};
constexpr std::array<std::string_view, kCells> kPositionNames = {
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"};

// Saturated and far apart in Lab, so that a blurred or colour-drifted copy still reads as the same name.
constexpr std::array<std::array<std::uint8_t, 3>, kColours> kColourRgb = {{
    {220, 30, 30},    // red
    {245, 140, 20},   // orange
    {245, 215, 30},   // yellow
    {40, 170, 50},    // green
    {40, 80, 220},    // blue
    {140, 50, 180},   // purple
    {250, 130, 190},  // pink
    {245, 245, 245},  // white
    {25, 25, 25},     // black
    {130, 80, 35},    // brown
}};

template <std::size_t N>
int index_of(const std::array<std::string_view, N>& names, std::string_view word) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == word) return static_cast<int>(i);
  return -1;
}

template <std::size_t N>
std::string_view checked_name(const std::array<std::string_view, N>& names, int i) {
  if (i < 0 || i >= static_cast<int>(N)) throw std::invalid_argument("toyworld: enum value out of range");
  return names[static_cast<std::size_t>(i)];
}

bool consume(std::string_view& text, std::string_view prefix) {
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  return true;
}

// One OBJ of the grammar: "a " [SIZE " "] COLOUR " " SHAPE " at the " POSITION, nothing else.
std::optional<Object> parse_object(std::string_view text) {
  Object object;
  if (!consume(text, "a ")) return std::nullopt;
  if (consume(text, "small ")) object.size = Size::small;
  else if (consume(text, "big ")) object.size = Size::big;
  const auto space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const int colour = index_of(kColourNames, text.substr(0, space));
  if (colour < 0) return std::nullopt;
  object.colour = static_cast<Colour>(colour);
  text.remove_prefix(space + 1);
  const auto at = text.find(" at the ");
  if (at == std::string_view::npos) return std::nullopt;
  const int shape = index_of(kShapeNames, text.substr(0, at));
  if (shape < 0) return std::nullopt;
  object.shape = static_cast<Shape>(shape);
  const int cell = index_of(kPositionNames, text.substr(at + 8));
  if (cell < 0) return std::nullopt;
  object.cell = cell;
  return object;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

std::string_view shape_name(Shape s) { return checked_name(kShapeNames, static_cast<int>(s)); }
std::string_view colour_name(Colour c) { return checked_name(kColourNames, static_cast<int>(c)); }
std::string_view size_name(Size s) { return checked_name(kSizeNames, static_cast<int>(s)); }
std::string_view background_name(Background b) { return checked_name(kBackgroundNames, static_cast<int>(b)); }
std::string_view position_name(int cell) { return checked_name(kPositionNames, cell); }

std::array<std::uint8_t, 3> colour_rgb(Colour c) {
  checked_name(kColourNames, static_cast<int>(c));
  return kColourRgb[static_cast<std::size_t>(c)];
}

bool hard_to_see(Colour c, Background b) {
  switch (c) {
    case Colour::white: return b == Background::snow;
    case Colour::black: return b == Background::night;
    case Colour::green: return b == Background::grass;
    case Colour::blue: return b == Background::sky || b == Background::sea;
    default: return false;
  }
}

const Object* Scene::object_at(int cell) const {
  for (const Object& object : objects)
    if (object.cell == cell) return &object;
  return nullptr;
}

std::string prompt(const Scene& scene) {
  std::string text;
  for (const Object& object : scene.objects) {
    if (!text.empty()) text += " and ";
    text += "a ";
    if (object.size != Size::medium) {
      text += size_name(object.size);
      text += ' ';
    }
    text += colour_name(object.colour);
    text += ' ';
    text += shape_name(object.shape);
    text += " at the ";
    text += position_name(object.cell);
  }
  text += ", ";
  text += background_name(scene.background);
  text += " background";
  return text;
}

std::optional<Scene> parse_prompt(std::string_view text) {
  if (!text.ends_with(" background")) return std::nullopt;
  text.remove_suffix(11);
  const auto comma = text.rfind(", ");
  if (comma == std::string_view::npos) return std::nullopt;
  Scene scene;
  const int background = index_of(kBackgroundNames, text.substr(comma + 2));
  if (background < 0) return std::nullopt;
  scene.background = static_cast<Background>(background);
  std::string_view objects = text.substr(0, comma);
  if (objects.find(',') != std::string_view::npos) return std::nullopt;
  while (true) {
    const auto sep = objects.find(" and ");
    const auto object = parse_object(objects.substr(0, sep));
    if (!object || scene.object_at(object->cell) || scene.objects.size() == kMaxObjects) return std::nullopt;
    scene.objects.push_back(*object);
    if (sep == std::string_view::npos) break;
    objects.remove_prefix(sep + 5);
  }
  return scene;
}

Rng::Rng(std::uint64_t seed) {
  for (auto& word : s_) word = splitmix64(seed);
}

std::uint64_t Rng::next() {  // xoshiro256**
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

int Rng::uniform(int n) {
  if (n <= 0) throw std::invalid_argument("toyworld: Rng::uniform needs n > 0");
  // Multiply-shift on the top 32 bits: no modulo bias worth mentioning for the small n used here, and
  // the same result on every platform.
  return static_cast<int>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
}

double Rng::uniform01() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

double Rng::normal() {  // Box-Muller, one value per call so the stream stays simple to reason about
  const double u1 = 1.0 - uniform01();
  const double u2 = uniform01();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

Scene random_scene(Rng& rng, const SceneOptions& options) {
  Scene scene;
  scene.background = static_cast<Background>(rng.uniform(kBackgrounds));
  const double u = rng.uniform01();
  const int count = u < 0.35 ? 1 : u < 0.75 ? 2 : 3;
  std::array<int, kCells> cells{0, 1, 2, 3, 4, 5, 6, 7, 8};
  for (int i = kCells - 1; i > 0; --i) std::swap(cells[i], cells[rng.uniform(i + 1)]);
  for (int i = 0; i < count; ++i) {
    Object object;
    object.cell = cells[i];
    object.shape = static_cast<Shape>(rng.uniform(kShapes));
    const double s = rng.uniform01();
    object.size = s < 0.25 ? Size::small : s < 0.75 ? Size::medium : Size::big;
    object.colour = static_cast<Colour>(rng.uniform(kColours));
    while (hard_to_see(object.colour, scene.background) && !(rng.uniform01() < options.keep_hard_to_see))
      object.colour = static_cast<Colour>(rng.uniform(kColours));
    scene.objects.push_back(object);
  }
  return scene;
}

CellRect cell_rect(int cell) {
  if (cell < 0 || cell >= kCells) throw std::invalid_argument("toyworld: cell out of range");
  const int row = cell / 3, column = cell % 3;
  return {column * kImageSize / 3, row * kImageSize / 3, (column + 1) * kImageSize / 3,
          (row + 1) * kImageSize / 3};
}

double size_fraction(Size s) {
  switch (s) {
    case Size::small: return 0.40;
    case Size::medium: return 0.65;
    case Size::big: return 0.90;
  }
  throw std::invalid_argument("toyworld: size out of range");
}

}  // namespace fisedit::toyworld
