// Matching a blob against the renderer's silhouettes (shape_match.h).
#include "toyworld/shape_match.h"

#include <algorithm>
#include <array>
#include <vector>

namespace fisedit::toyworld {
namespace {

constexpr int kMaxVariants = 2;

// Where a silhouette's inside lies in its unit square (shapes do not all fill it: a tree is narrower
// than tall, a star's points miss the bottom edge).
struct Bounds {
  double x0 = 1, y0 = 1, x1 = -1, y1 = -1;
};

const Bounds& silhouette_bounds(Shape shape, int variant) {
  static const auto table = [] {
    std::array<std::array<Bounds, kMaxVariants>, kShapes> out{};
    constexpr int kGrid = 400;
    constexpr double kStep = 1.1 / kGrid;
    for (int s = 0; s < kShapes; ++s) {
      for (int v = 0; v < shape_variants(static_cast<Shape>(s)); ++v) {
        Bounds& b = out[s][v];
        for (int j = 0; j < kGrid; ++j) {
          for (int i = 0; i < kGrid; ++i) {
            const double x = -0.55 + (i + 0.5) * kStep, y = -0.55 + (j + 0.5) * kStep;
            if (shape_distance(static_cast<Shape>(s), v, x, y) >= 0) continue;
            b = {std::min(b.x0, x - kStep / 2), std::min(b.y0, y - kStep / 2), std::max(b.x1, x + kStep / 2),
                 std::max(b.y1, y + kStep / 2)};
          }
        }
      }
    }
    return out;
  }();
  return table[static_cast<int>(shape)][variant];
}

struct Fit {
  double iou = 0, side = 0;
};

// The silhouette scaled and placed so that its bounds match the blob's box, then moved by up to a
// pixel each way (soft edges shift a thresholded box by that much): the best overlap.
Fit fit(const cv::Mat& blob, const cv::Rect& box, int blob_area, Shape shape, int variant) {
  const Bounds& b = silhouette_bounds(shape, variant);
  const double side = (box.width / (b.x1 - b.x0) + box.height / (b.y1 - b.y0)) / 2;
  const double cx = box.x + box.width / 2.0 - side * (b.x0 + b.x1) / 2;
  const double cy = box.y + box.height / 2.0 - side * (b.y0 + b.y1) / 2;
  constexpr int kMargin = 3;
  const int x0 = box.x - kMargin, y0 = box.y - kMargin;
  const int w = box.width + 2 * kMargin, h = box.height + 2 * kMargin;
  // Rasterised by 4x4 blocks: the distance is 1-Lipschitz, so one value at a block's centre decides
  // the blocks that do not straddle the edge.
  const auto distance = [&](double x, double y) {
    return shape_distance(shape, variant, (x - cx) / side, (y - cy) / side) * side;  // pixels
  };
  std::vector<cv::Point> inside;
  for (int bj = 0; bj < h; bj += 4) {
    for (int bi = 0; bi < w; bi += 4) {
      const int ei = std::min(bi + 4, w), ej = std::min(bj + 4, h);
      const double d = distance(x0 + (bi + ei) / 2.0, y0 + (bj + ej) / 2.0);
      if (d > 2.2) continue;
      for (int j = bj; j < ej; ++j)
        for (int i = bi; i < ei; ++i)
          if (d < -2.2 || distance(x0 + i + 0.5, y0 + j + 0.5) < 0) inside.push_back({x0 + i, y0 + j});
    }
  }
  Fit best{0, side};
  for (int dy = -1; dy <= 1; ++dy) {
    for (int dx = -1; dx <= 1; ++dx) {
      int overlap = 0;
      for (const cv::Point& p : inside) {
        const int x = p.x + dx, y = p.y + dy;
        if (x >= 0 && y >= 0 && x < blob.cols && y < blob.rows && blob.at<std::uint8_t>(y, x)) ++overlap;
      }
      const int union_area = static_cast<int>(inside.size()) + blob_area - overlap;
      best.iou = std::max(best.iou, union_area > 0 ? double(overlap) / union_area : 0.0);
    }
  }
  return best;
}

}  // namespace

ShapeMatch match_shape(const cv::Mat& blob, const cv::Rect& box) {
  const int area = cv::countNonZero(blob);
  std::array<Fit, kShapes> per_shape{};
  for (int s = 0; s < kShapes; ++s) {
    for (int v = 0; v < shape_variants(static_cast<Shape>(s)); ++v) {
      const Fit f = fit(blob, box, area, static_cast<Shape>(s), v);
      if (f.iou > per_shape[s].iou) per_shape[s] = f;
    }
  }
  ShapeMatch match;
  int best = 0;
  for (int s = 1; s < kShapes; ++s)
    if (per_shape[s].iou > per_shape[best].iou) best = s;
  double runner_up = 0;
  for (int s = 0; s < kShapes; ++s)
    if (s != best) runner_up = std::max(runner_up, per_shape[s].iou);
  match.shape = static_cast<Shape>(best);
  match.side = per_shape[best].side;
  match.iou = per_shape[best].iou;
  match.margin = match.iou - runner_up;
  return match;
}

}  // namespace fisedit::toyworld
