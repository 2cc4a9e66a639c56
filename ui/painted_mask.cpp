// The painted mask (painted_mask.h): brush and eraser strokes, clear, invert, and their undo.
#include "ui/painted_mask.h"

#include <QUndoStack>

#include <algorithm>
#include <cstring>

namespace fisedit::ui {

// One undo step: the pixels of a rect before and after it. Keeping the rect rather than the whole
// mask makes a small stroke on a large image cheap to remember.
class MaskChange : public QUndoCommand {
public:
  MaskChange(PaintedMask* mask, QRect rect, QImage before, QImage after, const QString& text)
      : QUndoCommand(text), m_mask(mask), m_rect(rect), m_before(std::move(before)), m_after(std::move(after)) {}
  void undo() override { m_mask->restore(m_rect, m_before); }
  // Also runs on push, when the mask already holds `after`: harmless, and it keeps push() uniform.
  void redo() override { m_mask->restore(m_rect, m_after); }

private:
  PaintedMask* m_mask;
  QRect m_rect;
  QImage m_before, m_after;
};

namespace {

// Enough for a long painting session; each step holds two copies of the rect it touched.
constexpr int kUndoLimit = 100;
// A brush smaller than this could step over pixels between two mouse positions: any pixel the
// stroke's centre line crosses has its centre within 1/sqrt(2) of the line.
constexpr double kMinRadius = 0.75;

}  // namespace

PaintedMask::PaintedMask(QObject* parent) : QObject(parent), m_undo(new QUndoStack(this)) {
  m_undo->setUndoLimit(kUndoLimit);
}

PaintedMask::~PaintedMask() = default;

void PaintedMask::reset(QSize size) {
  m_stroking = false;
  m_undo->clear();
  m_image = QImage();
  if (!size.isEmpty()) {
    m_image = QImage(size, QImage::Format_Grayscale8);
    m_image.fill(0);
  }
  emit changed(m_image.rect());
  setEmpty(true);
}

void PaintedMask::beginStroke(QPointF at, Tool tool, double diameter) {
  if (m_image.isNull()) return;
  m_stroking = true;
  m_tool = tool;
  m_diameter = diameter;
  m_beforeStroke = m_image.copy();
  m_strokeRect = QRect();
  m_last = at;
  extendStroke(at);
}

void PaintedMask::extendStroke(QPointF to) {
  if (!m_stroking) return;
  const QRect touched = stampSegment(m_last, to);
  m_last = to;
  if (touched.isEmpty()) return;
  m_strokeRect |= touched;
  if (m_tool == Tool::brush) setEmpty(false);  // the eraser's effect is known once the stroke ends
  emit changed(touched);
}

void PaintedMask::endStroke() {
  if (!m_stroking) return;
  m_stroking = false;
  const QImage before = m_beforeStroke.copy(m_strokeRect);
  m_beforeStroke = QImage();
  if (m_strokeRect.isEmpty() || before == m_image.copy(m_strokeRect)) return;  // nothing to undo
  pushChange(m_strokeRect, before, m_tool == Tool::brush ? tr("Brush Stroke") : tr("Eraser Stroke"));
}

void PaintedMask::clear() {
  if (m_image.isNull() || m_stroking || m_empty) return;
  const QImage before = m_image.copy();
  m_image.fill(0);
  pushChange(m_image.rect(), before, tr("Clear Mask"));
}

void PaintedMask::invert() {
  if (m_image.isNull() || m_stroking) return;
  const QImage before = m_image.copy();
  for (int y = 0; y < m_image.height(); ++y) {
    uchar* row = m_image.scanLine(y);
    for (int x = 0; x < m_image.width(); ++x) row[x] = 255 - row[x];
  }
  pushChange(m_image.rect(), before, tr("Invert Mask"));
}

void PaintedMask::pushChange(const QRect& rect, const QImage& before, const QString& text) {
  m_undo->push(new MaskChange(this, rect, before, m_image.copy(rect), text));
}

void PaintedMask::restore(const QRect& rect, const QImage& pixels) {
  for (int y = 0; y < rect.height(); ++y)
    std::memcpy(m_image.scanLine(rect.y() + y) + rect.x(), pixels.constScanLine(y), rect.width());
  emit changed(rect);
  setEmpty(scanEmpty());
}

QRect PaintedMask::stampSegment(QPointF from, QPointF to) {
  const double r = std::max(m_diameter / 2.0, kMinRadius);
  const QRect box = QRectF(from, to).normalized().adjusted(-r, -r, r, r).toAlignedRect() & m_image.rect();
  const uchar value = m_tool == Tool::brush ? 255 : 0;
  const QPointF d = to - from;
  const double length2 = QPointF::dotProduct(d, d);
  QRect touched;
  for (int y = box.top(); y <= box.bottom(); ++y) {
    uchar* row = m_image.scanLine(y);
    for (int x = box.left(); x <= box.right(); ++x) {
      // Distance from the pixel's centre to the segment: the brush swept along it.
      const QPointF p(x + 0.5, y + 0.5);
      const double t = length2 > 0 ? std::clamp(QPointF::dotProduct(p - from, d) / length2, 0.0, 1.0) : 0.0;
      const QPointF offset = from + t * d - p;
      if (QPointF::dotProduct(offset, offset) > r * r) continue;
      row[x] = value;
      touched |= QRect(x, y, 1, 1);
    }
  }
  return touched;
}

void PaintedMask::setEmpty(bool empty) {
  if (empty == m_empty) return;
  m_empty = empty;
  emit emptyChanged(empty);
}

bool PaintedMask::scanEmpty() const {
  for (int y = 0; y < m_image.height(); ++y) {
    const uchar* row = m_image.constScanLine(y);
    if (std::any_of(row, row + m_image.width(), [](uchar v) { return v != 0; })) return false;
  }
  return true;
}

void paintMaskOverlay(const QImage& mask, QImage& overlay, const QRect& rect) {
  // Magenta reads over skin, sky and foliage alike, and differs from the changed region's cyan. The
  // tint alone drowns in busy images, so the mask's edge is drawn opaque.
  const QRgb tint = qPremultiply(qRgba(235, 40, 160, 140));
  const QRgb edge = qRgba(255, 70, 200, 255);
  const int w = mask.width(), h = mask.height();
  const auto in = [&](int x, int y) { return x >= 0 && y >= 0 && x < w && y < h && mask.constScanLine(y)[x] > 127; };
  // A change flips the edge of its neighbours too.
  const QRect area = rect.adjusted(-1, -1, 1, 1) & mask.rect();
  for (int y = area.top(); y <= area.bottom(); ++y) {
    auto* out = reinterpret_cast<QRgb*>(overlay.scanLine(y));
    for (int x = area.left(); x <= area.right(); ++x) {
      if (!in(x, y))
        out[x] = 0;
      else
        out[x] = (in(x - 1, y) && in(x + 1, y) && in(x, y - 1) && in(x, y + 1)) ? tint : edge;
    }
  }
}

}  // namespace fisedit::ui
