// Conversions between the engine's Image8 and QImage for history records (history_record.h).
#include "ui/history_record.h"

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

}  // namespace fisedit::ui
