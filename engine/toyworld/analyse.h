#pragma once
// Reads a toy world image back into what a prompt would say: per cell whether an object is there, its
// colour, shape and size, and the image's background. No learned model: the background is modelled
// row by row from the gaps between cells, an object is the largest blob that differs from it (in Lab),
// its colour the nearest prototype, its shape the best overlap with the renderer's own silhouettes.
// Made for the edit-fidelity benchmark, so it tolerates what a diffusion model does to this world:
// soft edges, colours drifted by 10-20 levels, small blobs of noise.
#include "toyworld/world.h"

#include <array>

namespace fisedit::toyworld {

struct AnalyseOptions {
  double foreground_delta = 16.0;  // Lab distance from the background model that makes a pixel object
  double min_area = 0.03;          // share of the cell an object's blob must cover to count as present
};

struct CellReading {
  bool present = false;
  Colour colour = Colour::red;
  Shape shape = Shape::circle;
  Size size = Size::medium;
  double area = 0;          // the blob's share of the cell
  double shape_iou = 0;     // overlap with the chosen silhouette, 1 = perfect
  double shape_margin = 0;  // its lead over the next best shape's overlap
  double colour_distance = 0;  // Lab distance from the chosen colour's prototype
};

struct ImageReading {
  std::array<CellReading, kCells> cells{};
  Background background = Background::grass;
  double background_distance = 0;  // Lab distance from the chosen background's prototype
};

// Throws fisedit::Error (invalid_argument) unless the image is kImageSize x kImageSize RGB.
ImageReading analyse(const Image& image, const AnalyseOptions& options = {});

// How a reading agrees with the scene that was asked for, cell by cell.
struct CellCheck {
  bool presence = false;  // present exactly where the scene has an object
  bool colour = false;    // and for an object: the right colour, shape and size
  bool shape = false;     // (true for cells both agree are empty)
  bool size = false;
  bool all() const { return presence && colour && shape && size; }
};

struct SceneCheck {
  std::array<CellCheck, kCells> cells{};
  bool background = false;
  // Presence, colour and shape right in every cell (size is reported, not required) and the background.
  bool objects_right() const;
};

SceneCheck check(const ImageReading& reading, const Scene& scene);

}  // namespace fisedit::toyworld
