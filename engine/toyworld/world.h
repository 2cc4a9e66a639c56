#pragma once
// The toy world: the procedural images fisedit's built-in model was trained on, and the ground truth
// its edit-fidelity benchmark measures against. A 256x256 image is a 3x3 grid of cells; each of one to
// three objects sits centred in its own cell on a textured background. Everything is a pure function of
// a seed, so the training data, the benchmark cases and the tests agree wherever they run.
//
// Prompt grammar (exactly what the model was trained on):
//   OBJ (" and " OBJ){0,2} ", " BACKGROUND " background"
//   OBJ = "a " [SIZE " "] COLOUR " " SHAPE " at the " POSITION        (positions distinct)
// e.g. "a red circle at the top left and a big blue house at the bottom right, sand background".
//
// This header and world.cpp/render.cpp use only the C++ standard library, so the training data tool
// (app/tools/toyworld_data.cpp) builds as one static binary for the GPU machine.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fisedit::toyworld {

enum class Shape : std::uint8_t { circle, square, triangle, star, heart, house, tree, boat };
enum class Colour : std::uint8_t { red, orange, yellow, green, blue, purple, pink, white, black, brown };
enum class Size : std::uint8_t { small, medium, big };  // "small", no word, "big"
enum class Background : std::uint8_t { grass, sand, sea, sky, snow, night };

inline constexpr int kShapes = 8, kColours = 10, kSizes = 3, kBackgrounds = 6, kCells = 9;
inline constexpr int kImageSize = 256;  // pixels, square
inline constexpr int kMaxObjects = 3;

std::string_view shape_name(Shape s);
std::string_view colour_name(Colour c);
std::string_view size_name(Size s);  // "" for medium
std::string_view background_name(Background b);
// "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right";
// cell = 3 * row + column.
std::string_view position_name(int cell);

// The colour objects of that colour are filled with (before shading), sRGB.
std::array<std::uint8_t, 3> colour_rgb(Colour c);
// Object colours that are (nearly) invisible on a background: white on snow, black on night, green on
// grass, blue on sky or sea. Rare in training, excluded from the benchmark.
bool hard_to_see(Colour c, Background b);

struct Object {
  Shape shape = Shape::circle;
  Colour colour = Colour::red;
  Size size = Size::medium;
  int cell = 4;
  bool operator==(const Object&) const = default;
};

// What a prompt says. Objects in prompt order; cells distinct.
struct Scene {
  std::vector<Object> objects;
  Background background = Background::grass;
  bool operator==(const Scene&) const = default;
  const Object* object_at(int cell) const;  // nullptr when the cell is empty
};

std::string prompt(const Scene& scene);
// The scene a grammar prompt describes, or nullopt for any text outside the grammar (extra spaces,
// unknown words, repeated cells, more than three objects...).
std::optional<Scene> parse_prompt(std::string_view text);

// A small deterministic generator (splitmix64 seeding xoshiro256**), the same on every platform.
class Rng {
public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  int uniform(int n);        // [0, n)
  double uniform01();        // [0, 1)
  double normal();           // N(0, 1)

private:
  std::array<std::uint64_t, 4> s_{};
};

struct SceneOptions {
  // Probability that a hard-to-see colour/background pair drawn at random is kept (training: rare;
  // the benchmark: 0).
  double keep_hard_to_see = 0.1;
};
Scene random_scene(Rng& rng, const SceneOptions& options = {});

// How one rendering of a scene varies beyond what the prompt says: per object a jitter of a few
// pixels and a style (light shading or an outline); the background's texture. Drawn from a seed.
struct RenderOptions {
  std::uint64_t seed = 0;
  int max_jitter = 4;  // pixels, each axis
};

struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // row-major, 3 bytes a pixel
};
Image render(const Scene& scene, const RenderOptions& options = {});

// Cell geometry: pixel rectangle [x0, x1) x [y0, y1) of a cell in a kImageSize image.
struct CellRect {
  int x0, y0, x1, y1;
};
CellRect cell_rect(int cell);
// Side of an object's bounding square as a share of the cell side: 0.40, 0.65, 0.90.
double size_fraction(Size s);

// The silhouettes objects are drawn from, for analysers that match against them: the signed distance
// (negative inside) from (x, y) to the shape drawn in a unit square centred on the origin, y down, in
// units of the square's side. Some shapes are drawn more than one way (a tree's crown is round or
// pointed): variant in [0, shape_variants(s)); render() picks one per object.
int shape_variants(Shape s);
double shape_distance(Shape s, int variant, double x, double y);

}  // namespace fisedit::toyworld
