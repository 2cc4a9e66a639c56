// The image canvas (image_canvas.h): zoom, pan, the changed-region overlay, before/after (held Space and
// the split compare), mask painting.
#include "ui/image_canvas.h"

#include <QKeyEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QWheelEvent>

#include <algorithm>
#include <cmath>

namespace fisedit::ui {
namespace {

constexpr double kMinZoom = 0.05;
constexpr double kMaxZoom = 32.0;
constexpr double kZoomStep = 1.25;
constexpr double kBrushStep = 1.25;  // [ and ]: a few presses span small to large, as in image editors
// How far from the compare divider a press grabs it: a 1-px line is too hard to hit.
constexpr double kDividerGrab = 5;

// A caption on a dark plate, readable on any image.
void paintCaption(QPainter& painter, const QRect& plate, const QString& text) {
  painter.fillRect(plate, QColor(0, 0, 0, 160));
  painter.setPen(Qt::white);
  painter.drawText(plate, Qt::AlignCenter, text);
}

// Dims what the edit kept and tints what it re-rendered: a plain colour over the region would vanish
// on images of that colour, a darkened surround reads on any image.
QImage overlayOf(const QImage& region) {
  const QImage grey = region.convertToFormat(QImage::Format_Grayscale8);
  QImage overlay(grey.size(), QImage::Format_ARGB32_Premultiplied);
  for (int y = 0; y < grey.height(); ++y) {
    const uchar* in = grey.constScanLine(y);
    auto* out = reinterpret_cast<QRgb*>(overlay.scanLine(y));
    for (int x = 0; x < grey.width(); ++x) {
      const int inside = in[x];  // 0 kept .. 255 re-rendered; the feathered edge blends the two
      const QRgb kept = qRgba(0, 0, 0, 170), changed = qRgba(80, 220, 255, 50);
      out[x] = qPremultiply(qRgba((qRed(changed) * inside) / 255, (qGreen(changed) * inside) / 255,
                                  (qBlue(changed) * inside) / 255,
                                  (qAlpha(kept) * (255 - inside) + qAlpha(changed) * inside) / 255));
    }
  }
  return overlay;
}

}  // namespace

ImageCanvas::ImageCanvas(QWidget* parent) : QWidget(parent) {
  setObjectName(QStringLiteral("imageCanvas"));
  setFocusPolicy(Qt::StrongFocus);  // Space and M reach it after a click on the image
  setMinimumSize(200, 200);
  setAutoFillBackground(true);
  QPalette pal = palette();
  pal.setColor(QPalette::Window, QColor(0x2b, 0x2b, 0x2b));
  setPalette(pal);
  setToolTip(tr("Wheel: zoom · drag: pan (middle button while painting) · hold Space: previous image · "
                "Ctrl+B: before/after split (drag the divider) · "
                "M: changed region · B/E: paint/erase the mask of the next edit, [ ]: brush size"));
  m_mask = new PaintedMask(this);
  connect(m_mask, &PaintedMask::changed, this, &ImageCanvas::updateMaskOverlay);
}

void ImageCanvas::setImage(const QImage& image, const QImage& changedRegion, const QImage& previous) {
  const bool sameSize = image.size() == m_image.size();
  m_image = image;
  m_previous = previous;
  m_preview = QImage();
  m_overlay = changedRegion.isNull() ? QImage() : overlayOf(changedRegion);
  m_showPrevious = false;
  m_painting = false;
  m_draggingDivider = false;
  m_mask->reset(image.size());
  // Keeps the view when stepping through images of one size, so before/after compare the same spot.
  if (!sameSize) {
    m_center = QPointF(image.width() / 2.0, image.height() / 2.0);
    m_fit = true;
  }
  if (m_fit) m_zoom = fitZoom();
  emit zoomChanged(m_zoom);  // the zoom shown follows a new image's fit
  update();
}

void ImageCanvas::clear() { setImage(QImage()); }

void ImageCanvas::showPreview(const QImage& preview) {
  m_preview = preview;
  update();
  emit previewShown();
}

void ImageCanvas::clearPreview() {
  if (m_preview.isNull()) return;
  m_preview = QImage();
  update();
}

void ImageCanvas::setOverlayVisible(bool visible) {
  m_overlayVisible = visible;
  update();
}

void ImageCanvas::setCompare(bool on) {
  if (on == m_compare) return;
  m_compare = on;
  m_draggingDivider = false;
  updateMouseTracking();
  if (!on && !m_dragging) updateCursor(QPointF(-1e9, -1e9));
  update();
}

void ImageCanvas::setCompareSplit(double fraction) {
  m_compareSplit = std::clamp(fraction, 0.0, 1.0);
  update();
}

double ImageCanvas::compareDividerX() const {
  const QRectF target = imageRect();
  return target.left() + m_compareSplit * target.width();
}

bool ImageCanvas::nearDivider(QPointF widgetPos) const {
  if (!comparing() || !m_preview.isNull()) return false;
  const QRectF target = imageRect();
  return std::abs(widgetPos.x() - compareDividerX()) <= kDividerGrab && widgetPos.y() >= target.top() &&
         widgetPos.y() <= target.bottom();
}

void ImageCanvas::updateCursor(QPointF widgetPos) {
  if (nearDivider(widgetPos))
    setCursor(Qt::SplitHCursor);
  else if (m_tool == Tool::pan)
    unsetCursor();
  else
    setCursor(Qt::CrossCursor);
}

// Hover events for the brush outline, and in compare mode for the divider's cursor.
void ImageCanvas::updateMouseTracking() { setMouseTracking(m_tool != Tool::pan || m_compare); }

void ImageCanvas::zoomIn() { zoomAt(kZoomStep, rect().center()); }
void ImageCanvas::zoomOut() { zoomAt(1.0 / kZoomStep, rect().center()); }

void ImageCanvas::fitToWindow() {
  m_fit = true;
  m_center = QPointF(m_image.width() / 2.0, m_image.height() / 2.0);
  m_zoom = fitZoom();
  emit zoomChanged(m_zoom);
  update();
}

void ImageCanvas::setActualSize() { setZoom(1.0); }
void ImageCanvas::setZoom(double zoom) { zoomAt(zoom / m_zoom, QRectF(rect()).center()); }

void ImageCanvas::setTool(Tool tool) {
  if (tool == m_tool) return;
  if (m_painting) {
    m_mask->endStroke();
    m_painting = false;
  }
  m_tool = tool;
  // Tracking only while painting (the outline follows the pointer) or comparing: panning needs no
  // hover events.
  updateMouseTracking();
  if (tool == Tool::pan) {
    unsetCursor();
    m_hover.reset();
  } else {
    setCursor(Qt::CrossCursor);
  }
  emit toolChanged(tool);
  update();
}

void ImageCanvas::setBrushSize(int diameter) {
  diameter = std::clamp(diameter, kMinBrushSize, kMaxBrushSize);
  if (diameter == m_brushSize) return;
  m_brushSize = diameter;
  emit brushSizeChanged(diameter);
  update();
}

// At least one pixel per press, so the smallest sizes are reachable.
void ImageCanvas::growBrush() { setBrushSize(std::max(m_brushSize + 1, int(std::lround(m_brushSize * kBrushStep)))); }
void ImageCanvas::shrinkBrush() { setBrushSize(std::min(m_brushSize - 1, int(std::lround(m_brushSize / kBrushStep)))); }

QPointF ImageCanvas::mapToImage(QPointF widgetPos) const {
  return m_center + (widgetPos - QRectF(rect()).center()) / m_zoom;
}

void ImageCanvas::updateMaskOverlay(const QRect& region) {
  const QImage& mask = m_mask->image();
  if (m_maskOverlay.size() != mask.size()) {
    m_maskOverlay = mask.isNull() ? QImage() : QImage(mask.size(), QImage::Format_ARGB32_Premultiplied);
    m_maskOverlay.fill(Qt::transparent);
    paintMaskOverlay(mask, m_maskOverlay, mask.rect());
  } else {
    paintMaskOverlay(mask, m_maskOverlay, region);
  }
  update();
}

double ImageCanvas::fitZoom(QSize image) const {
  if (image.isEmpty()) return 1.0;
  const double margin = 16;
  const double zx = (width() - margin) / image.width();
  const double zy = (height() - margin) / image.height();
  return std::clamp(std::min(zx, zy), kMinZoom, kMaxZoom);
}

void ImageCanvas::zoomAt(double factor, QPointF anchor) {
  if (m_image.isNull()) return;
  const double zoom = std::clamp(m_zoom * factor, kMinZoom, kMaxZoom);
  const QPointF widgetCenter = QRectF(rect()).center();
  // The image point under the anchor stays under it: solve for the new centre.
  const QPointF imagePoint = m_center + (anchor - widgetCenter) / m_zoom;
  m_center = imagePoint - (anchor - widgetCenter) / zoom;
  m_zoom = zoom;
  m_fit = false;
  emit zoomChanged(m_zoom);
  update();
}

// The inverse of mapToImage().
QRectF ImageCanvas::imageRect() const {
  const QPointF topLeft = QRectF(rect()).center() - m_center * m_zoom;
  return {topLeft, QSizeF(m_image.size()) * m_zoom};
}

QRectF ImageCanvas::previewRect() const {
  // Same size: where the image is, so the picture settles in place instead of jumping at the end.
  if (m_preview.size() == m_image.size()) return imageRect();
  QRectF target(QPointF(), QSizeF(m_preview.size()) * fitZoom(m_preview.size()));
  target.moveCenter(QRectF(rect()).center());
  return target;
}

void ImageCanvas::paintEvent(QPaintEvent*) {
  QPainter painter(this);
  if (!m_preview.isNull()) {
    painter.setRenderHint(QPainter::SmoothPixmapTransform, false);  // the blocks are the honest picture
    painter.drawImage(previewRect(), m_preview);
    return;
  }
  if (m_image.isNull()) {
    painter.setPen(QColor(0xaa, 0xaa, 0xaa));
    painter.drawText(rect(), Qt::AlignCenter, tr("Write a prompt and press Generate (Ctrl+Enter)"));
    return;
  }
  // Smooth when shrinking; blocky when magnifying, so single pixels can be inspected.
  painter.setRenderHint(QPainter::SmoothPixmapTransform, m_zoom < 1.0);
  const QRectF target = imageRect();
  const bool previous = m_showPrevious && !m_previous.isNull();
  painter.drawImage(target, previous ? m_previous : m_image);
  if (m_overlayVisible && !m_overlay.isNull() && !previous) {
    painter.drawImage(target, m_overlay);
    paintLegend(painter);
  }
  if (!m_mask->isEmpty() && !previous) painter.drawImage(target, m_maskOverlay);
  if (comparing() && !previous) paintCompare(painter, target);
  if (m_tool != Tool::pan && m_hover) paintBrushOutline(painter);
  if (previous) paintCaption(painter, QRect(8, 8, 80, 22), tr("previous"));
}

void ImageCanvas::paintCompare(QPainter& painter, const QRectF& target) const {
  // The previous image over the left part, unmarked: the overlays and the mask belong to the current one.
  const double x = compareDividerX();
  painter.save();
  painter.setClipRect(QRectF(QPointF(target.left(), target.top()), QPointF(x, target.bottom())));
  painter.drawImage(target, m_previous);  // scaled into the same rectangle should the sizes differ
  painter.restore();

  const double top = std::max(0.0, target.top()), bottom = std::min(double(height()), target.bottom());
  painter.save();
  painter.setRenderHint(QPainter::Antialiasing);
  painter.setPen(QPen(QColor(0, 0, 0, 140), 4));
  painter.drawLine(QPointF(x, top), QPointF(x, bottom));
  painter.setPen(QPen(Qt::white, 2));
  painter.drawLine(QPointF(x, top), QPointF(x, bottom));
  // A grip in the middle of the visible line says it can be dragged.
  const QPointF grip(x, (top + bottom) / 2);
  painter.setBrush(QColor(255, 255, 255, 230));
  painter.setPen(QPen(QColor(0, 0, 0, 160), 1));
  painter.drawEllipse(grip, 9, 9);
  painter.setBrush(QColor(40, 40, 40));
  painter.setPen(Qt::NoPen);
  painter.drawPolygon(QPolygonF({grip + QPointF(-2, -4), grip + QPointF(-6, 0), grip + QPointF(-2, 4)}));
  painter.drawPolygon(QPolygonF({grip + QPointF(2, -4), grip + QPointF(6, 0), grip + QPointF(2, 4)}));
  painter.restore();

  paintCaption(painter, QRect(8, 8, 80, 22), tr("Before"));
  paintCaption(painter, QRect(width() - 88, 8, 80, 22), tr("After"));
}

void ImageCanvas::setOverlayLegend(const QString& legend) {
  m_overlayLegend = legend;
  if (m_overlayVisible) update();
}

void ImageCanvas::paintLegend(QPainter& painter) const {
  if (m_overlayLegend.isEmpty()) return;
  // Bottom left, over a dark plate: a swatch of each look, then the words.
  const QFontMetrics metrics(font());
  const int swatch = metrics.height();
  const QRect text = metrics.boundingRect(QRect(0, 0, std::max(120, width() - 60), 400),
                                          Qt::TextWordWrap, m_overlayLegend);
  const QRect plate(8, height() - text.height() - 16, text.width() + swatch + 20, text.height() + 8);
  painter.fillRect(plate, QColor(0, 0, 0, 190));
  painter.fillRect(QRect(plate.left() + 6, plate.top() + 4, swatch, swatch / 2), QColor(80, 220, 255));
  painter.fillRect(QRect(plate.left() + 6, plate.top() + 4 + swatch / 2, swatch, swatch - swatch / 2), QColor(40, 40, 40));
  painter.setPen(Qt::white);
  painter.drawText(QRect(plate.left() + swatch + 12, plate.top() + 4, text.width(), text.height()), Qt::TextWordWrap,
                   m_overlayLegend);
}

void ImageCanvas::paintBrushOutline(QPainter& painter) const {
  // Black inside white: visible on light and dark images alike.
  const double r = m_brushSize / 2.0 * m_zoom;
  painter.setRenderHint(QPainter::Antialiasing);
  painter.setBrush(Qt::NoBrush);
  painter.setPen(QPen(Qt::white, 1));
  painter.drawEllipse(*m_hover, r + 1, r + 1);
  painter.setPen(QPen(Qt::black, 1));
  painter.drawEllipse(*m_hover, r, r);
}

void ImageCanvas::wheelEvent(QWheelEvent* event) {
  const double steps = event->angleDelta().y() / 120.0;
  if (steps != 0) zoomAt(std::pow(kZoomStep, steps), event->position());
  event->accept();
}

void ImageCanvas::mousePressEvent(QMouseEvent* event) {
  // The divider comes before the brush: a stroke started on it would be a surprise either way, and
  // this one can be undone by dragging back.
  if (event->button() == Qt::LeftButton && !m_painting && !m_dragging && nearDivider(event->position())) {
    m_draggingDivider = true;
    return;
  }
  const bool paint = event->button() == Qt::LeftButton && m_tool != Tool::pan && !m_image.isNull();
  if (paint && !m_dragging) {
    const auto tool = m_tool == Tool::brush ? PaintedMask::Tool::brush : PaintedMask::Tool::eraser;
    m_painting = true;
    m_mask->beginStroke(mapToImage(event->position()), tool, m_brushSize);
    return;
  }
  const bool pan = event->button() == Qt::MiddleButton || (event->button() == Qt::LeftButton && m_tool == Tool::pan);
  if (!pan || m_painting) return QWidget::mousePressEvent(event);
  m_dragging = true;
  m_dragStart = event->position();
  m_dragCenter = m_center;
  setCursor(Qt::ClosedHandCursor);
}

void ImageCanvas::mouseMoveEvent(QMouseEvent* event) {
  if (m_tool != Tool::pan) {
    m_hover = event->position();
    update();
  }
  if (m_draggingDivider) {
    const QRectF target = imageRect();
    if (target.width() > 0) setCompareSplit((event->position().x() - target.left()) / target.width());
    return;
  }
  if (m_painting) {
    m_mask->extendStroke(mapToImage(event->position()));
    return;
  }
  if (!m_dragging) {
    if (m_compare) updateCursor(event->position());
    return;
  }
  m_center = m_dragCenter - (event->position() - m_dragStart) / m_zoom;
  m_fit = false;
  update();
}

void ImageCanvas::mouseReleaseEvent(QMouseEvent* event) {
  if (m_draggingDivider && event->button() == Qt::LeftButton) {
    m_draggingDivider = false;
    updateCursor(event->position());
    return;
  }
  if (m_painting && event->button() == Qt::LeftButton) {
    m_mask->endStroke();
    m_painting = false;
    return;
  }
  if (!m_dragging) return;
  m_dragging = false;
  updateCursor(event->position());
}

void ImageCanvas::keyPressEvent(QKeyEvent* event) {
  if (event->key() == Qt::Key_Space) {
    if (!event->isAutoRepeat() && !m_previous.isNull()) {
      m_showPrevious = true;
      update();
    }
    return;
  }
  QWidget::keyPressEvent(event);
}

void ImageCanvas::keyReleaseEvent(QKeyEvent* event) {
  if (event->key() == Qt::Key_Space) {
    if (!event->isAutoRepeat()) {
      m_showPrevious = false;
      update();
    }
    return;
  }
  QWidget::keyReleaseEvent(event);
}

void ImageCanvas::focusOutEvent(QFocusEvent* event) {
  // A release that goes to another widget must not leave the previous image stuck on screen.
  m_showPrevious = false;
  update();
  QWidget::focusOutEvent(event);
}

void ImageCanvas::leaveEvent(QEvent* event) {
  m_hover.reset();
  update();
  QWidget::leaveEvent(event);
}

void ImageCanvas::resizeEvent(QResizeEvent* event) {
  if (m_fit) {
    m_zoom = fitZoom();
    emit zoomChanged(m_zoom);
  }
  QWidget::resizeEvent(event);
}

}  // namespace fisedit::ui
