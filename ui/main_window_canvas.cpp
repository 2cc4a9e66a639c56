// The canvas and its tools: the view toolbar, the mask painting tools and their Edit menu, and how a
// painted mask steers the edit options.
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/mask_toolbar.h"
#include "ui/painted_mask.h"
#include "ui/parameters_panel.h"

#include <QAction>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QStatusBar>
#include <QToolBar>
#include <QUndoStack>
#include <QVBoxLayout>

#include <cmath>

namespace fisedit::ui {

QWidget* MainWindow::createCanvasArea() {
  m_canvasArea = new QWidget;
  auto* layout = new QVBoxLayout(m_canvasArea);
  layout->setContentsMargins(0, 0, 0, 0);
  m_canvas = new ImageCanvas;
  auto* bar = new QToolBar;
  bar->setObjectName(QStringLiteral("canvasToolBar"));
  bar->setToolButtonStyle(Qt::ToolButtonTextOnly);
  bar->addAction(tr("Fit"), m_canvas, &ImageCanvas::fitToWindow)->setToolTip(tr("Fit to window (Ctrl+0)"));
  bar->addAction(tr("1:1"), m_canvas, &ImageCanvas::setActualSize)->setToolTip(tr("Actual size"));
  bar->addAction(QStringLiteral("−"), m_canvas, &ImageCanvas::zoomOut)->setToolTip(tr("Zoom out (Ctrl+-)"));
  bar->addAction(QStringLiteral("+"), m_canvas, &ImageCanvas::zoomIn)->setToolTip(tr("Zoom in (Ctrl+=)"));
  // In the status bar rather than this toolbar, whose end folds away in a narrow window.
  auto* zoomLabel = new QLabel;
  zoomLabel->setObjectName(QStringLiteral("zoomLabel"));
  zoomLabel->setToolTip(tr("Zoom: 100% shows one image pixel per screen pixel (View > Actual Size)"));
  zoomLabel->setMinimumWidth(zoomLabel->fontMetrics().horizontalAdvance(tr("zoom 3200%")));
  statusBar()->addPermanentWidget(zoomLabel);
  connect(m_canvas, &ImageCanvas::zoomChanged, zoomLabel, [zoomLabel, canvas = m_canvas](double zoom) {
    zoomLabel->setText(canvas->image().isNull() ? QString() : tr("zoom %1%").arg(std::lround(zoom * 100)));
  });
  bar->addSeparator();
  m_overlayAction = bar->addAction(tr("Changed region"));
  m_overlayAction->setObjectName(QStringLiteral("overlayAction"));
  m_overlayAction->setCheckable(true);
  m_overlayAction->setShortcut(QKeySequence(Qt::Key_M));
  m_overlayAction->setToolTip(tr("Show the region the last edit re-rendered (M); hold Space for the previous image"));
  connect(m_overlayAction, &QAction::toggled, m_canvas, &ImageCanvas::setOverlayVisible);
  // Beside hold-Space: both images at once, split where the user drags the divider.
  m_compareAction = bar->addAction(tr("Compare"));
  m_compareAction->setObjectName(QStringLiteral("compareAction"));
  m_compareAction->setText(tr("Compare &Before/After"));
  m_compareAction->setIconText(tr("Compare"));
  m_compareAction->setCheckable(true);
  m_compareAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_B));
  m_compareAction->setToolTip(tr("The image it was made from left of a divider, this one right; drag the divider (Ctrl+B)"));
  m_compareAction->setEnabled(false);
  connect(m_compareAction, &QAction::toggled, this,
          [this](bool on) { m_canvas->setCompare(on && m_compareAction->isEnabled()); });
  bar->addSeparator();

  m_maskTools = new MaskToolBar(m_canvas);
  connect(m_canvas->mask(), &PaintedMask::emptyChanged, this, &MainWindow::onMaskEmptyChanged);
  auto* bars = new QHBoxLayout;
  bars->setSpacing(0);
  bars->addWidget(bar);
  bars->addWidget(m_maskTools);
  bars->addStretch(1);
  layout->addLayout(bars);
  m_viewOnlyBar = createViewOnlyBar();
  layout->addWidget(m_viewOnlyBar);
  layout->addWidget(m_canvas, 1);
  return m_canvasArea;
}

void MainWindow::createEditMenu() {
  auto* edit = menuBar()->addMenu(tr("&Edit"));
  // One Undo for the window: the mask's strokes first (they belong to the image shown), then the
  // history's deletions. The mask bar's own undo gives up its shortcut to it.
  m_maskTools->undoAction()->setShortcut(QKeySequence());
  m_undoAction = edit->addAction(tr("&Undo"), this, &MainWindow::undo);
  m_undoAction->setObjectName(QStringLiteral("undoAction"));
  m_undoAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Z));
  m_undoAction->setShortcutContext(Qt::WindowShortcut);
  QUndoStack* strokes = m_canvas->mask()->undoStack();
  connect(strokes, &QUndoStack::canUndoChanged, this, &MainWindow::updateUndoAction);
  connect(strokes, &QUndoStack::undoTextChanged, this, &MainWindow::updateUndoAction);
  updateUndoAction();
  edit->addAction(m_maskTools->redoAction());
  edit->addSeparator();
  createClipboardActions(edit);
  edit->addSeparator();
  edit->addAction(m_maskTools->brushAction());
  edit->addAction(m_maskTools->eraserAction());
  edit->addAction(m_maskTools->smallerAction());
  edit->addAction(m_maskTools->largerAction());
  edit->addSeparator();
  edit->addAction(m_maskTools->clearAction());
  edit->addAction(m_maskTools->invertAction());
}

void MainWindow::undo() {
  QUndoStack* strokes = m_canvas->mask()->undoStack();
  if (strokes->canUndo())
    strokes->undo();
  else
    undoDeletion();
}

void MainWindow::updateUndoAction() {
  if (!m_undoAction) return;
  const QUndoStack* strokes = m_canvas->mask()->undoStack();
  if (strokes->canUndo()) {
    m_undoAction->setText(tr("&Undo %1").arg(strokes->undoText()));
    m_undoAction->setEnabled(true);
  } else if (!m_deletions.isEmpty()) {
    m_undoAction->setText(tr("&Undo Delete (%n image(s))", nullptr, static_cast<int>(m_deletions.last().records.size())));
    m_undoAction->setEnabled(!m_busy);
  } else {
    m_undoAction->setText(tr("&Undo"));
    m_undoAction->setEnabled(false);
  }
}

void MainWindow::onMaskEmptyChanged(bool empty) {
  const MaskMode before = m_parameters->maskMode();
  m_parameters->setPaintedMaskAvailable(!empty);
  // Painting says where to edit; making the user find the setting too would be one step too many.
  // Only from automatic: a user who chose "both" keeps it.
  if (!empty && before == MaskMode::automatic) {
    m_parameters->setMaskMode(MaskMode::painted);
    statusBar()->showMessage(tr("Region: painted. The next edit re-renders only the painted area, "
                                "without detection steps (Region, in the Edit box under the parameters)"),
                             8000);
  } else if (empty && before != MaskMode::automatic && !m_canvas->image().isNull()) {
    statusBar()->showMessage(tr("Region: automatic again (the mask is empty)"), 5000);
  }
  updateGenerateButton();
}

std::optional<Image8> MainWindow::paintedMaskForEdit() const {
  const PaintedMask* mask = m_canvas->mask();
  if (m_parameters->maskMode() == MaskMode::automatic || mask->isEmpty()) return std::nullopt;
  return toImage8(mask->image());  // Grayscale8: one channel, white = may change
}

}  // namespace fisedit::ui
