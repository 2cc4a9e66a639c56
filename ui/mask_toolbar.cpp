// The mask painting toolbar (mask_toolbar.h): its actions, shortcuts and brush size label.
#include "ui/mask_toolbar.h"

#include "ui/image_canvas.h"
#include "ui/painted_mask.h"

#include <QAction>
#include <QActionGroup>
#include <QLabel>
#include <QUndoStack>

namespace fisedit::ui {

MaskToolBar::MaskToolBar(ImageCanvas* canvas, QWidget* parent) : QToolBar(parent), m_canvas(canvas) {
  setObjectName(QStringLiteral("maskToolBar"));
  setToolButtonStyle(Qt::ToolButtonTextOnly);
  const QString belongs = tr("The mask belongs to the image shown: selecting another image in the history, "
                             "generating or editing clears it.");

  // Optional exclusivity: pressing the checked tool again returns the left button to panning.
  auto* tools = new QActionGroup(this);
  tools->setExclusionPolicy(QActionGroup::ExclusionPolicy::ExclusiveOptional);
  m_brush = addAction(tr("Brush"));
  m_brush->setObjectName(QStringLiteral("brushAction"));
  m_brush->setShortcut(QKeySequence(Qt::Key_B));
  m_brush->setToolTip(tr("Paint the region the next edit may change (B; again: back to panning). %1").arg(belongs));
  m_eraser = addAction(tr("Eraser"));
  m_eraser->setObjectName(QStringLiteral("eraserAction"));
  m_eraser->setShortcut(QKeySequence(Qt::Key_E));
  m_eraser->setToolTip(tr("Erase from the painted region (E). %1").arg(belongs));
  for (QAction* tool : {m_brush, m_eraser}) {
    tool->setCheckable(true);
    tools->addAction(tool);
  }
  connect(tools, &QActionGroup::triggered, this, [this] {
    m_canvas->setTool(m_brush->isChecked()    ? ImageCanvas::Tool::brush
                      : m_eraser->isChecked() ? ImageCanvas::Tool::eraser
                                              : ImageCanvas::Tool::pan);
  });
  connect(m_canvas, &ImageCanvas::toolChanged, this, [this](ImageCanvas::Tool tool) {
    m_brush->setChecked(tool == ImageCanvas::Tool::brush);
    m_eraser->setChecked(tool == ImageCanvas::Tool::eraser);
  });

  m_sizeLabel = new QLabel;
  m_sizeLabel->setObjectName(QStringLiteral("brushSizeLabel"));
  m_sizeLabel->setToolTip(tr("Brush diameter in image pixels ([ smaller, ] larger)"));
  m_sizeLabel->setContentsMargins(6, 0, 6, 0);
  addWidget(m_sizeLabel);
  showBrushSize(m_canvas->brushSize());
  connect(m_canvas, &ImageCanvas::brushSizeChanged, this, &MaskToolBar::showBrushSize);

  m_clear = addAction(tr("Clear"), m_canvas->mask(), &PaintedMask::clear);
  m_clear->setObjectName(QStringLiteral("clearMaskAction"));
  m_clear->setToolTip(tr("Clear the painted mask: the next edit finds its region automatically"));
  m_invert = addAction(tr("Invert"), m_canvas->mask(), &PaintedMask::invert);
  m_invert->setObjectName(QStringLiteral("invertMaskAction"));
  m_invert->setToolTip(tr("Paint what is unpainted and unpaint the rest: keep a subject, change its surroundings"));

  // Keyboard and menu only; on the canvas rather than this bar so they get no buttons of their own.
  m_smaller = new QAction(tr("Smaller Brush"), this);
  m_smaller->setShortcut(QKeySequence(Qt::Key_BracketLeft));
  connect(m_smaller, &QAction::triggered, m_canvas, &ImageCanvas::shrinkBrush);
  m_larger = new QAction(tr("Larger Brush"), this);
  m_larger->setShortcut(QKeySequence(Qt::Key_BracketRight));
  connect(m_larger, &QAction::triggered, m_canvas, &ImageCanvas::growBrush);
  QUndoStack* undo = m_canvas->mask()->undoStack();
  m_undo = undo->createUndoAction(this);
  m_undo->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Z));
  m_redo = undo->createRedoAction(this);
  m_redo->setShortcuts({QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_Z), QKeySequence(Qt::CTRL | Qt::Key_Y)});
  for (QAction* action : {m_smaller, m_larger, m_undo, m_redo}) {
    // Window-wide like the menu's; text fields still take their own Ctrl+Z first (ShortcutOverride).
    action->setShortcutContext(Qt::WindowShortcut);
    m_canvas->addAction(action);
  }

  connect(m_canvas->mask(), &PaintedMask::changed, this, &MaskToolBar::updateActions);
  connect(m_canvas->mask(), &PaintedMask::emptyChanged, this, &MaskToolBar::updateActions);
  updateActions();
}

void MaskToolBar::setPaintable(bool paintable, const QString& why) {
  m_paintable = paintable;
  m_notPaintableWhy = why;
  updateActions();
}

void MaskToolBar::updateActions() {
  const PaintedMask* mask = m_canvas->mask();
  const bool image = !mask->image().isNull() && m_paintable;
  if (!image) {
    m_canvas->setTool(ImageCanvas::Tool::pan);
    for (QAction* tool : {m_brush, m_eraser}) tool->setChecked(false);
  }
  for (QAction* action : {m_brush, m_eraser, m_invert}) action->setEnabled(image);
  m_clear->setEnabled(!mask->isEmpty() && m_paintable);
  setToolTip(m_paintable ? QString() : m_notPaintableWhy);
}

void MaskToolBar::showBrushSize(int diameter) { m_sizeLabel->setText(tr("%1 px").arg(diameter)); }

}  // namespace fisedit::ui
