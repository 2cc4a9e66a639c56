#pragma once
// The current image, zoomable and pannable, with an optional translucent overlay of the region the
// last edit re-rendered, and the previous image while Space is held (before/after without leaving the
// keyboard).
#include <QImage>
#include <QPointF>
#include <QWidget>

namespace fisedit::ui {

class ImageCanvas : public QWidget {
  Q_OBJECT

public:
  explicit ImageCanvas(QWidget* parent = nullptr);

  // `changedRegion`: Grayscale8 of the image's size, white where the edit may have changed pixels;
  // null for a generation. `previous`: what Space shows; null for none.
  void setImage(const QImage& image, const QImage& changedRegion = {}, const QImage& previous = {});
  void clear();

  const QImage& image() const { return m_image; }
  bool hasChangedRegion() const { return !m_overlay.isNull(); }
  bool overlayVisible() const { return m_overlayVisible; }
  bool showingPrevious() const { return m_showPrevious; }
  double zoom() const { return m_zoom; }
  bool fitsWindow() const { return m_fit; }

  QSize sizeHint() const override { return {560, 560}; }

public slots:
  void setOverlayVisible(bool visible);
  void zoomIn();
  void zoomOut();
  void fitToWindow();
  void setActualSize();

signals:
  void zoomChanged(double zoom);

protected:
  void paintEvent(QPaintEvent* event) override;
  void wheelEvent(QWheelEvent* event) override;
  void mousePressEvent(QMouseEvent* event) override;
  void mouseMoveEvent(QMouseEvent* event) override;
  void mouseReleaseEvent(QMouseEvent* event) override;
  void keyPressEvent(QKeyEvent* event) override;
  void keyReleaseEvent(QKeyEvent* event) override;
  void resizeEvent(QResizeEvent* event) override;
  void focusOutEvent(QFocusEvent* event) override;

private:
  // Zooms keeping the image point under `anchor` (widget coordinates) where it is.
  void zoomAt(double factor, QPointF anchor);
  double fitZoom() const;
  QRectF imageRect() const;  // where the image is drawn, in widget coordinates

  QImage m_image;
  QImage m_previous;
  QImage m_overlay;  // ARGB32, translucent over the changed region, transparent elsewhere
  bool m_overlayVisible = false;
  bool m_showPrevious = false;
  bool m_fit = true;  // follows the widget's size until the user zooms
  double m_zoom = 1.0;
  QPointF m_center;    // image coordinates shown at the widget's centre
  QPointF m_dragStart;
  QPointF m_dragCenter;
  bool m_dragging = false;
};

}  // namespace fisedit::ui
