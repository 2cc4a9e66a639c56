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
  setToolTip(tr("Wheel: zoom · drag: pan · hold Space: previous image · M: changed region"));
}

void ImageCanvas::setImage(const QImage& image, const QImage& changedRegion, const QImage& previous) {
  const bool sameSize = image.size() == m_image.size();
  m_image = image;
  m_previous = previous;
  m_overlay = changedRegion.isNull() ? QImage() : overlayOf(changedRegion);
  m_showPrevious = false;
  // Keeps the view when stepping through images of one size, so before/after compare the same spot.
  if (!sameSize) {
    m_center = QPointF(image.width() / 2.0, image.height() / 2.0);
    m_fit = true;
  }
  if (m_fit) m_zoom = fitZoom();
  update();
}

void ImageCanvas::clear() { setImage(QImage()); }

void ImageCanvas::setOverlayVisible(bool visible) {
  m_overlayVisible = visible;
  update();
}

void ImageCanvas::zoomIn() { zoomAt(kZoomStep, rect().center()); }
void ImageCanvas::zoomOut() { zoomAt(1.0 / kZoomStep, rect().center()); }

void ImageCanvas::fitToWindow() {
  m_fit = true;
  m_center = QPointF(m_image.width() / 2.0, m_image.height() / 2.0);
  m_zoom = fitZoom();
  emit zoomChanged(m_zoom);
  update();
}

void ImageCanvas::setActualSize() { zoomAt(1.0 / m_zoom, rect().center()); }

double ImageCanvas::fitZoom() const {
  if (m_image.isNull()) return 1.0;
  const double margin = 16;
  const double zx = (width() - margin) / m_image.width();
  const double zy = (height() - margin) / m_image.height();
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

QRectF ImageCanvas::imageRect() const {
  const QPointF topLeft = QRectF(rect()).center() - m_center * m_zoom;
  return {topLeft, QSizeF(m_image.size()) * m_zoom};
}

void ImageCanvas::paintEvent(QPaintEvent*) {
  QPainter painter(this);
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
  if (m_overlayVisible && !m_overlay.isNull() && !previous) painter.drawImage(target, m_overlay);
  if (previous) {
    painter.setPen(Qt::white);
    painter.fillRect(QRect(8, 8, 80, 22), QColor(0, 0, 0, 160));
    painter.drawText(QRect(8, 8, 80, 22), Qt::AlignCenter, tr("previous"));
  }
}

void ImageCanvas::wheelEvent(QWheelEvent* event) {
  const double steps = event->angleDelta().y() / 120.0;
  if (steps != 0) zoomAt(std::pow(kZoomStep, steps), event->position());
  event->accept();
}

void ImageCanvas::mousePressEvent(QMouseEvent* event) {
  if (event->button() != Qt::LeftButton) return QWidget::mousePressEvent(event);
  m_dragging = true;
  m_dragStart = event->position();
  m_dragCenter = m_center;
  setCursor(Qt::ClosedHandCursor);
}

void ImageCanvas::mouseMoveEvent(QMouseEvent* event) {
  if (!m_dragging) return;
  m_center = m_dragCenter - (event->position() - m_dragStart) / m_zoom;
  m_fit = false;
  update();
}

void ImageCanvas::mouseReleaseEvent(QMouseEvent*) {
  m_dragging = false;
  unsetCursor();
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

void ImageCanvas::resizeEvent(QResizeEvent* event) {
  if (m_fit) m_zoom = fitZoom();
  QWidget::resizeEvent(event);
}

}  // namespace fisedit::ui
