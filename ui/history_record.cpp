// Conversions between the engine's Image8 and QImage for history records (history_record.h).
#include "ui/history_record.h"

#include <algorithm>
#include <cstring>

namespace fisedit::ui {

QImage toQImage(const Image8& image) {
  QImage::Format format = QImage::Format_RGB888;
  if (image.channels == 1) format = QImage::Format_Grayscale8;
  if (image.channels == 4) format = QImage::Format_RGBA8888;
  const int rowBytes = image.width * image.channels;
  // QImage rows are 32-bit aligned; Image8 rows are packed, so copy row by row.
  QImage out(image.width, image.height, format);
  for (int y = 0; y < image.height; ++y)
    std::memcpy(out.scanLine(y), image.pixels.data() + static_cast<std::size_t>(y) * rowBytes, rowBytes);
  return out;
}

Image8 toImage8(const QImage& source) {
  const bool grey = source.format() == QImage::Format_Grayscale8;
  const QImage image = grey ? source : source.convertToFormat(QImage::Format_RGB888);
  Image8 out;
  out.width = image.width();
  out.height = image.height();
  out.channels = grey ? 1 : 3;
  const int rowBytes = out.width * out.channels;
  out.pixels.resize(static_cast<std::size_t>(rowBytes) * out.height);
  for (int y = 0; y < out.height; ++y)
    std::memcpy(out.pixels.data() + static_cast<std::size_t>(y) * rowBytes, image.constScanLine(y), rowBytes);
  return out;
}

namespace {

double whiteShare(const QImage& grey) {
  if (grey.isNull()) return 0;
  const QImage g = grey.convertToFormat(QImage::Format_Grayscale8);
  qint64 white = 0;
  for (int y = 0; y < g.height(); ++y) {
    const uchar* row = g.constScanLine(y);
    for (int x = 0; x < g.width(); ++x) white += row[x] > 127;
  }
  return static_cast<double>(white) / (static_cast<double>(g.width()) * g.height());
}

}  // namespace

double changedFraction(const HistoryRecord& record) {
  if (!record.isEdit()) return 0;
  // A record without its region (none is ever made so; a damaged file could) falls back on the
  // engine's latent share, the closest figure there is.
  return record.changedRegion.isNull() ? record.stats.edit_fraction : whiteShare(record.changedRegion);
}

double editMs(const HistoryRecord& record) {
  if (!record.isEdit() || record.regeneration.nodes == 0) return record.totalMs;
  return std::max(0.0, record.totalMs - record.regeneration.ms);
}

double paintedFraction(const HistoryRecord& record) {
  if (!record.isEdit() || !record.edit.painted_mask || record.edit.mask_mode == MaskMode::automatic) return 0;
  return whiteShare(toQImage(*record.edit.painted_mask));
}

}  // namespace fisedit::ui
