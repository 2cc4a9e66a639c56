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
#include <QVBoxLayout>

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
  bar->addSeparator();
  m_overlayAction = bar->addAction(tr("Changed region"));
  m_overlayAction->setObjectName(QStringLiteral("overlayAction"));
  m_overlayAction->setCheckable(true);
  m_overlayAction->setShortcut(QKeySequence(Qt::Key_M));
  m_overlayAction->setToolTip(tr("Show the region the last edit re-rendered (M); hold Space for the previous image"));
  connect(m_overlayAction, &QAction::toggled, m_canvas, &ImageCanvas::setOverlayVisible);
  bar->addSeparator();

  m_maskTools = new MaskToolBar(m_canvas);
  connect(m_canvas->mask(), &PaintedMask::emptyChanged, this, &MainWindow::onMaskEmptyChanged);
  auto* bars = new QHBoxLayout;
  bars->setSpacing(0);
  bars->addWidget(bar);
  bars->addWidget(m_maskTools);
  bars->addStretch(1);
  layout->addLayout(bars);
  layout->addWidget(m_canvas, 1);
  return m_canvasArea;
}

void MainWindow::createEditMenu() {
  auto* edit = menuBar()->addMenu(tr("&Edit"));
  edit->addAction(m_maskTools->undoAction());
  edit->addAction(m_maskTools->redoAction());
  edit->addSeparator();
  edit->addAction(m_maskTools->brushAction());
  edit->addAction(m_maskTools->eraserAction());
  edit->addAction(m_maskTools->smallerAction());
  edit->addAction(m_maskTools->largerAction());
  edit->addSeparator();
  edit->addAction(m_maskTools->clearAction());
  edit->addAction(m_maskTools->invertAction());
}

void MainWindow::onMaskEmptyChanged(bool empty) {
  const MaskMode before = m_parameters->maskMode();
  m_parameters->setPaintedMaskAvailable(!empty);
  // Painting says where to edit; making the user find the setting too would be one step too many.
  // Only from automatic: a user who chose "both" keeps it.
  if (!empty && before == MaskMode::automatic) {
    m_parameters->setMaskMode(MaskMode::painted);
    statusBar()->showMessage(tr("Region: painted. The next edit re-renders only the painted area, "
                                "without detection steps (Edit options > Region to change)"),
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
