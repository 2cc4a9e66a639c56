#pragma once
// The current image, zoomable and pannable, with an optional translucent overlay of the region the
// last edit re-rendered, and the previous image while Space is held (before/after without leaving the
// keyboard), or both side by side: the compare mode splits the image at a draggable divider, the
// previous image left of it and the current one right. With the brush or eraser picked, the left button paints the mask of the next edit at
// image resolution; the middle button always pans.
#include "ui/painted_mask.h"

#include <QImage>
#include <QPointF>
#include <QWidget>

#include <optional>

class QPainter;

namespace fisedit::ui {

class ImageCanvas : public QWidget {
  Q_OBJECT

public:
  // What the left button does.
  enum class Tool { pan, brush, eraser };
  Q_ENUM(Tool)
  static constexpr int kMinBrushSize = 1;
  static constexpr int kMaxBrushSize = 512;

  explicit ImageCanvas(QWidget* parent = nullptr);

  // `changedRegion`: Grayscale8 of the image's size, white where the edit may have changed pixels;
  // null for a generation. `previous`: what Space shows; null for none. Starts a blank mask: a
  // painted mask belongs to the image it was painted on.
  void setImage(const QImage& image, const QImage& changedRegion = {}, const QImage& previous = {});
  void clear();
  // A preview of a job under way (latentPreview), drawn instead of the image, its overlays and the
  // mask, which stay as they are for when the job ends. Fitted to the widget when its size differs
  // from the image's. clearPreview() shows the image again; setImage() and clear() drop it too.
  void showPreview(const QImage& preview);
  void clearPreview();
  bool showingPreview() const { return !m_preview.isNull(); }
  const QImage& preview() const { return m_preview; }

  const QImage& image() const { return m_image; }
  bool hasChangedRegion() const { return !m_overlay.isNull(); }
  bool overlayVisible() const { return m_overlayVisible; }
  // The legend drawn with the changed-region overlay ("tinted: re-rendered, 12% of the image · dimmed:
  // kept"); set by the window with the image, since the figure is the history's.
  void setOverlayLegend(const QString& legend);
  const QString& overlayLegend() const { return m_overlayLegend; }
  bool showingPrevious() const { return m_showPrevious; }
  bool hasPrevious() const { return !m_previous.isNull(); }
  // The compare mode is on and has a previous image to show.
  bool comparing() const { return m_compare && !m_previous.isNull(); }
  // Where the divider is, as a fraction of the image's width: it belongs to the image, so it stays on
  // the same pixels through zoom and pan.
  double compareSplit() const { return m_compareSplit; }
  // The divider's x in widget coordinates under the current zoom and pan.
  double compareDividerX() const;
  double zoom() const { return m_zoom; }
  bool fitsWindow() const { return m_fit; }
  PaintedMask* mask() const { return m_mask; }
  Tool tool() const { return m_tool; }
  int brushSize() const { return m_brushSize; }  // diameter, image pixels
  // Widget coordinates to image coordinates (pixel (x, y) spans [x, x+1)) under the current zoom and pan.
  QPointF mapToImage(QPointF widgetPos) const;

  QSize sizeHint() const override { return {560, 560}; }

public slots:
  void setOverlayVisible(bool visible);
  void setCompare(bool on);
  void setCompareSplit(double fraction);  // clamped to [0, 1]
  void zoomIn();
  void zoomOut();
  void fitToWindow();
  void setActualSize();
  void setZoom(double zoom);  // about the widget's centre
  void setTool(fisedit::ui::ImageCanvas::Tool tool);
  void setBrushSize(int diameter);
  void growBrush();
  void shrinkBrush();

signals:
  void zoomChanged(double zoom);
  void toolChanged(fisedit::ui::ImageCanvas::Tool tool);
  void brushSizeChanged(int diameter);
  void previewShown();

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
  void leaveEvent(QEvent* event) override;

private:
  // Zooms keeping the image point under `anchor` (widget coordinates) where it is.
  void zoomAt(double factor, QPointF anchor);
  double fitZoom() const { return fitZoom(m_image.size()); }
  double fitZoom(QSize image) const;  // the zoom that fits an image of that size in the widget
  QRectF imageRect() const;  // where the image is drawn, in widget coordinates
  QRectF previewRect() const;
  void paintLegend(QPainter& painter) const;
  void updateMaskOverlay(const QRect& region);
  void paintBrushOutline(QPainter& painter) const;
  void paintCompare(QPainter& painter, const QRectF& target) const;
  bool nearDivider(QPointF widgetPos) const;
  // The pointer's look when no drag is under way: the split cursor over the divider, else the tool's.
  void updateCursor(QPointF widgetPos);
  void updateMouseTracking();

  QImage m_image;
  QImage m_previous;
  QImage m_preview;
  QImage m_overlay;  // ARGB32, translucent over the changed region, transparent elsewhere
  bool m_overlayVisible = false;
  QString m_overlayLegend;
  bool m_showPrevious = false;
  bool m_compare = false;
  double m_compareSplit = 0.5;
  bool m_draggingDivider = false;
  bool m_fit = true;  // follows the widget's size until the user zooms
  double m_zoom = 1.0;
  QPointF m_center;    // image coordinates shown at the widget's centre
  QPointF m_dragStart;
  QPointF m_dragCenter;
  bool m_dragging = false;

  PaintedMask* m_mask = nullptr;
  QImage m_maskOverlay;  // ARGB32, the mask's tint
  Tool m_tool = Tool::pan;
  int m_brushSize = 48;
  bool m_painting = false;
  std::optional<QPointF> m_hover;  // where the brush outline is drawn, widget coordinates
};

}  // namespace fisedit::ui
