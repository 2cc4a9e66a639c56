#pragma once
// The mask painting tools of an ImageCanvas: brush (B) and eraser (E), brush size ([ and ]) with a
// label showing it, clear, invert, and undo/redo of strokes (Ctrl+Z, Ctrl+Shift+Z). The actions are
// also for the window's menu; the keyboard-only ones live on the canvas so their shortcuts work
// wherever the toolbar is shown.
#include <QToolBar>

class QAction;
class QLabel;

namespace fisedit::ui {

class ImageCanvas;

class MaskToolBar : public QToolBar {
  Q_OBJECT

public:
  explicit MaskToolBar(ImageCanvas* canvas, QWidget* parent = nullptr);

  QAction* brushAction() const { return m_brush; }
  QAction* eraserAction() const { return m_eraser; }
  QAction* smallerAction() const { return m_smaller; }
  QAction* largerAction() const { return m_larger; }
  QAction* clearAction() const { return m_clear; }
  QAction* invertAction() const { return m_invert; }
  QAction* undoAction() const { return m_undo; }
  QAction* redoAction() const { return m_redo; }
  // Off for an image no edit can start from (view only): painting would have nothing to steer, so the
  // tools are disabled (with `why` as their tooltip) and the canvas pans.
  void setPaintable(bool paintable, const QString& why = {});

private:
  void updateActions();
  void showBrushSize(int diameter);

  ImageCanvas* m_canvas;
  QAction* m_brush = nullptr;
  QAction* m_eraser = nullptr;
  QAction* m_smaller = nullptr;
  QAction* m_larger = nullptr;
  QAction* m_clear = nullptr;
  QAction* m_invert = nullptr;
  QAction* m_undo = nullptr;
  QAction* m_redo = nullptr;
  QLabel* m_sizeLabel = nullptr;
  bool m_paintable = true;
  QString m_notPaintableWhy;
};

}  // namespace fisedit::ui
