// The toy world's image analyser (analyse.h): background rows, blobs, colours in Lab, checks against a scene.
#include "toyworld/analyse.h"

#include "core/error.h"
#include "toyworld/shape_match.h"

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace fisedit::toyworld {
namespace {

using Lab = cv::Vec3f;

cv::Mat to_lab(const cv::Mat& rgb8) {
  cv::Mat rgb, lab;
  rgb8.convertTo(rgb, CV_32FC3, 1.0 / 255);
  cv::cvtColor(rgb, lab, cv::COLOR_RGB2Lab);
  return lab;
}

Lab lab_of(const std::array<std::uint8_t, 3>& rgb) {
  cv::Mat pixel(1, 1, CV_8UC3, cv::Scalar(rgb[0], rgb[1], rgb[2]));
  return to_lab(pixel).at<Lab>(0, 0);
}

float median(std::vector<float>& v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// The background a row at a time: backgrounds are gradients with a horizon, and the gaps between
// cells (and the image's edges) are where objects almost never reach, so the median of those columns
// over three rows is the row's colour, stars and grain included.
std::vector<Lab> background_rows(const cv::Mat& lab) {
  std::vector<int> columns;
  for (int x : {0, 1, 2, kImageSize - 3, kImageSize - 2, kImageSize - 1}) columns.push_back(x);
  for (int cell : {0, 1})
    for (int x = cell_rect(cell).x1 - 2; x <= cell_rect(cell).x1 + 1; ++x) columns.push_back(x);
  std::vector<Lab> rows(kImageSize);
  std::vector<float> samples[3];
  for (int y = 0; y < kImageSize; ++y) {
    for (auto& s : samples) s.clear();
    for (int r = std::max(0, y - 1); r <= std::min(kImageSize - 1, y + 1); ++r)
      for (int x : columns)
        for (int k = 0; k < 3; ++k) samples[k].push_back(lab.at<Lab>(r, x)[k]);
    for (int k = 0; k < 3; ++k) rows[y][k] = median(samples[k]);
  }
  return rows;
}

// What tells the backgrounds apart: the mean colour below the top row of cells, where grass and sea
// have no sky.
Lab background_signature(const std::vector<Lab>& rows) {
  Lab sum(0, 0, 0);
  const int y0 = cell_rect(3).y0;
  for (int y = y0; y < kImageSize; ++y) sum += rows[y];
  return sum / static_cast<float>(kImageSize - y0);
}

// Prototypes measured the way images are: renders of each empty background, averaged over seeds.
const std::array<Lab, kBackgrounds>& background_prototypes() {
  static const std::array<Lab, kBackgrounds> prototypes = [] {
    std::array<Lab, kBackgrounds> out{};
    constexpr int kSeeds = 4;
    for (int b = 0; b < kBackgrounds; ++b) {
      for (int seed = 0; seed < kSeeds; ++seed) {
        Image image = render(Scene{{}, static_cast<Background>(b)}, {.seed = 1000u + seed});
        const cv::Mat rgb(kImageSize, kImageSize, CV_8UC3, image.rgb.data());
        out[b] += background_signature(background_rows(to_lab(rgb))) / static_cast<float>(kSeeds);
      }
    }
    return out;
  }();
  return prototypes;
}

const std::array<Lab, kColours>& colour_prototypes() {
  static const std::array<Lab, kColours> prototypes = [] {
    std::array<Lab, kColours> out{};
    for (int c = 0; c < kColours; ++c) out[c] = lab_of(colour_rgb(static_cast<Colour>(c)));
    return out;
  }();
  return prototypes;
}

template <std::size_t N>
int nearest(const std::array<Lab, N>& prototypes, const Lab& value, double* distance) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(N); ++i)
    if (cv::norm(prototypes[i] - value) < cv::norm(prototypes[best] - value)) best = i;
  *distance = cv::norm(prototypes[best] - value);
  return best;
}

// An object's colour: shading, outlines, trunks and hulls are darker than the colour named, so the
// median of the lighter half of its inner pixels.
Colour read_colour(const cv::Mat& lab_cell, const cv::Mat& blob, double* distance) {
  cv::Mat inner;
  cv::erode(blob, inner, cv::Mat());
  if (cv::countNonZero(inner) < 30) inner = blob;
  std::vector<Lab> pixels;
  for (int y = 0; y < inner.rows; ++y)
    for (int x = 0; x < inner.cols; ++x)
      if (inner.at<std::uint8_t>(y, x)) pixels.push_back(lab_cell.at<Lab>(y, x));
  std::sort(pixels.begin(), pixels.end(), [](const Lab& a, const Lab& b) { return a[0] < b[0]; });
  std::vector<float> channel[3];
  for (std::size_t i = pixels.size() / 2; i < pixels.size(); ++i)
    for (int k = 0; k < 3; ++k) channel[k].push_back(pixels[i][k]);
  const Lab colour(median(channel[0]), median(channel[1]), median(channel[2]));
  return static_cast<Colour>(nearest(colour_prototypes(), colour, distance));
}

}  // namespace

ImageReading analyse(const Image& image, const AnalyseOptions& options) {
  if (image.width != kImageSize || image.height != kImageSize ||
      image.rgb.size() != std::size_t{kImageSize} * kImageSize * 3)
    throw Error(ErrorCode::invalid_argument, "toy world analysis needs a 256x256 RGB image");
  const cv::Mat rgb(kImageSize, kImageSize, CV_8UC3, const_cast<std::uint8_t*>(image.rgb.data()));
  const cv::Mat lab = to_lab(rgb);
  const std::vector<Lab> rows = background_rows(lab);

  ImageReading reading;
  reading.background = static_cast<Background>(
      nearest(background_prototypes(), background_signature(rows), &reading.background_distance));

  cv::Mat foreground(kImageSize, kImageSize, CV_8U);
  const auto threshold = static_cast<float>(options.foreground_delta);
  for (int y = 0; y < kImageSize; ++y)
    for (int x = 0; x < kImageSize; ++x)
      foreground.at<std::uint8_t>(y, x) = cv::norm(lab.at<Lab>(y, x) - rows[y]) > threshold ? 255 : 0;
  // No opening: it would eat a small star's points. Stars, grain and a diffusion model's specks are
  // blobs of their own, and only each cell's largest blob counts.

  for (int cell = 0; cell < kCells; ++cell) {
    const CellRect r = cell_rect(cell);
    const cv::Rect roi(r.x0, r.y0, r.x1 - r.x0, r.y1 - r.y0);
    cv::Mat labels, stats, centroids;
    const int n = cv::connectedComponentsWithStats(foreground(roi), labels, stats, centroids, 8, CV_32S);
    int largest = 0;
    for (int i = 1; i < n; ++i)
      if (largest == 0 || stats.at<int>(i, cv::CC_STAT_AREA) > stats.at<int>(largest, cv::CC_STAT_AREA)) largest = i;
    CellReading& out = reading.cells[cell];
    if (largest == 0) continue;
    out.area = stats.at<int>(largest, cv::CC_STAT_AREA) / static_cast<double>(roi.area());
    if (out.area < options.min_area) continue;
    out.present = true;
    cv::Mat blob = labels == largest;
    // Fill holes (a shaded object's lightest corner can fall near the background): flood the outside.
    cv::Mat outside = cv::Mat::zeros(blob.rows + 2, blob.cols + 2, CV_8U);
    blob.copyTo(outside(cv::Rect(1, 1, blob.cols, blob.rows)));
    cv::floodFill(outside, cv::Point(0, 0), 128);
    blob = outside(cv::Rect(1, 1, blob.cols, blob.rows)) != 128;

    out.colour = read_colour(lab(roi), blob, &out.colour_distance);
    const ShapeMatch match = match_shape(blob, cv::boundingRect(blob));
    out.shape = match.shape;
    out.shape_iou = match.iou;
    out.shape_margin = match.margin;
    const double fraction = match.side / (kImageSize / 3.0);
    out.size = fraction < (size_fraction(Size::small) + size_fraction(Size::medium)) / 2 ? Size::small
               : fraction < (size_fraction(Size::medium) + size_fraction(Size::big)) / 2 ? Size::medium
                                                                                       : Size::big;
  }
  return reading;
}

bool SceneCheck::objects_right() const {
  return background && std::all_of(cells.begin(), cells.end(), [](const CellCheck& c) {
           return c.presence && c.colour && c.shape;
         });
}

SceneCheck check(const ImageReading& reading, const Scene& scene) {
  SceneCheck result;
  result.background = reading.background == scene.background;
  for (int cell = 0; cell < kCells; ++cell) {
    const Object* object = scene.object_at(cell);
    const CellReading& seen = reading.cells[cell];
    CellCheck& c = result.cells[cell];
    c.presence = seen.present == (object != nullptr);
    if (!object || !seen.present) {
      c.colour = c.shape = c.size = c.presence;
      continue;
    }
    c.colour = seen.colour == object->colour;
    c.shape = seen.shape == object->shape;
    c.size = seen.size == object->size;
  }
  return result;
}

}  // namespace fisedit::toyworld
