#pragma once
// The analyser's shape reading (analyse.cpp): which of the renderer's silhouettes a blob is.
#include "toyworld/world.h"

#include <opencv2/core.hpp>

namespace fisedit::toyworld {

struct ShapeMatch {
  Shape shape = Shape::circle;
  double side = 0;    // pixels: the side of the object's unit square that fits the blob
  double iou = 0;     // overlap of blob and silhouette
  double margin = 0;  // iou minus the best iou of any other shape
};

// blob: CV_8U, nonzero inside; box: its bounding rectangle.
ShapeMatch match_shape(const cv::Mat& blob, const cv::Rect& box);

}  // namespace fisedit::toyworld
