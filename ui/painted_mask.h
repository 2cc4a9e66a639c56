#pragma once
// The region the user paints for the next edit: a Grayscale8 image of the shown image's size, white
// where the edit may change pixels, with undo of whole strokes. It is kept binary (0 or 255) because
// the engine thresholds it per 8x8 block: soft edges would only hide where the cut falls; the
// composite's feather softens the result instead.
#include <QImage>
#include <QObject>
#include <QPointF>
#include <QRect>

class QUndoStack;

namespace fisedit::ui {

class PaintedMask : public QObject {
  Q_OBJECT

public:
  enum class Tool { brush, eraser };

  explicit PaintedMask(QObject* parent = nullptr);
  ~PaintedMask() override;

  // Blank at `size` (null for no image), with no undo history: a mask belongs to one image.
  void reset(QSize size);
  const QImage& image() const { return m_image; }
  bool isEmpty() const { return m_empty; }
  QUndoStack* undoStack() const { return m_undo; }

  // A stroke is one undo step. Points are image coordinates (pixel (x, y) spans [x, x+1) x [y, y+1));
  // `diameter` is in image pixels. A pixel is painted when its centre lies within the brush.
  void beginStroke(QPointF at, Tool tool, double diameter);
  void extendStroke(QPointF to);
  void endStroke();
  bool isStroking() const { return m_stroking; }

public slots:
  void clear();   // undoable, unlike reset()
  void invert();  // undoable

signals:
  // Pixels inside `region` (image coordinates) changed.
  void changed(const QRect& region);
  // The mask became empty (nothing painted) or stopped being so; what the edit options follow.
  void emptyChanged(bool empty);

private:
  friend class MaskChange;
  // What undo and redo write: `pixels` (Grayscale8, the rect's size) at `rect`.
  void restore(const QRect& rect, const QImage& pixels);
  void pushChange(const QRect& rect, const QImage& before, const QString& text);
  QRect stampSegment(QPointF from, QPointF to);
  void setEmpty(bool empty);
  bool scanEmpty() const;

  QImage m_image;
  bool m_empty = true;
  QUndoStack* m_undo = nullptr;

  bool m_stroking = false;
  Tool m_tool = Tool::brush;
  double m_diameter = 1;
  QPointF m_last;
  QImage m_beforeStroke;  // the whole mask as the stroke found it; only its dirty rect is kept
  QRect m_strokeRect;
};

// Writes the translucent tint that shows `mask` into `overlay` (ARGB32_Premultiplied, the mask's
// size) over `rect` and the pixels next to it, so a stroke repaints only what it touched.
void paintMaskOverlay(const QImage& mask, QImage& overlay, const QRect& rect);

}  // namespace fisedit::ui
