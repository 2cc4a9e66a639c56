// Painting the mask of the next edit with the mouse and the keyboard, as a user does: strokes land on
// the image pixels under the pointer at any zoom and pan, the eraser removes, [ and ] size the brush,
// undo and redo restore the mask exactly, clear and invert, and a new image starts a blank mask.
#include "ui/image_canvas.h"
#include "ui/mask_toolbar.h"
#include "ui/painted_mask.h"

#include <QtTest>
#include <QLabel>
#include <QSignalSpy>
#include <QUndoStack>
#include <QVBoxLayout>

#include <cmath>

using fisedit::ui::ImageCanvas;
using fisedit::ui::MaskToolBar;

namespace {

// Not square, so a swapped x and y shows.
constexpr QSize kImageSize(160, 120);
constexpr QSize kCanvasSize(480, 360);

// The canvas and its tools in a window of their own, as the main window lays them out.
struct Painter {
  QWidget window;
  ImageCanvas* canvas = new ImageCanvas;
  MaskToolBar* tools = new MaskToolBar(canvas);

  Painter() {
    auto* layout = new QVBoxLayout(&window);
    layout->addWidget(tools);
    layout->addWidget(canvas);
    canvas->setFixedSize(kCanvasSize);
    QImage image(kImageSize, QImage::Format_RGB888);
    image.fill(QColor(90, 120, 60));
    canvas->setImage(image);
  }
  bool show() {
    window.show();
    // Active, not only exposed: the tools' shortcuts are window shortcuts.
    return QTest::qWaitForWindowActive(&window);
  }
  const QImage& mask() const { return canvas->mask()->image(); }
  void key(int key, Qt::KeyboardModifiers modifiers = Qt::NoModifier) {
    QTest::keyClick(canvas, Qt::Key(key), modifiers);
  }
  // One stroke through `points` (widget coordinates): press, moves, release.
  void stroke(const QList<QPoint>& points) {
    QTest::mousePress(canvas, Qt::LeftButton, Qt::NoModifier, points.first());
    for (qsizetype i = 1; i < points.size(); ++i) QTest::mouseMove(canvas, points[i]);
    QTest::mouseRelease(canvas, Qt::LeftButton, Qt::NoModifier, points.last());
  }
};

bool painted(const QImage& mask, int x, int y) { return qGray(mask.pixel(x, y)) == 255; }

int paintedCount(const QImage& mask) {
  int n = 0;
  for (int y = 0; y < mask.height(); ++y)
    for (int x = 0; x < mask.width(); ++x) n += painted(mask, x, y);
  return n;
}

}  // namespace

class TestMaskPainting : public QObject {
  Q_OBJECT

private slots:
  void dabLandsOnTheImagePixelUnderThePointer_data() {
    QTest::addColumn<double>("zoom");
    QTest::addColumn<QPoint>("pan");  // a middle-button drag, widget pixels
    QTest::addColumn<QPoint>("pixel");
    QTest::addColumn<int>("brush");
    QTest::newRow("zoom 1") << 1.0 << QPoint() << QPoint(40, 30) << 9;
    QTest::newRow("zoom 1 panned") << 1.0 << QPoint(70, -50) << QPoint(150, 10) << 12;
    QTest::newRow("zoom 3 panned") << 3.0 << QPoint(-120, 45) << QPoint(90, 20) << 7;
    QTest::newRow("zoom 0.5") << 0.5 << QPoint() << QPoint(20, 100) << 16;
  }

  void dabLandsOnTheImagePixelUnderThePointer() {
    QFETCH(double, zoom);
    QFETCH(QPoint, pan);
    QFETCH(QPoint, pixel);
    QFETCH(int, brush);
    Painter p;
    QVERIFY(p.show());
    p.canvas->setZoom(zoom);
    const QPoint middle(kCanvasSize.width() / 2, kCanvasSize.height() / 2);
    if (!pan.isNull()) {
      QTest::mousePress(p.canvas, Qt::MiddleButton, Qt::NoModifier, middle);
      QTest::mouseMove(p.canvas, middle + pan);
      QTest::mouseRelease(p.canvas, Qt::MiddleButton, Qt::NoModifier, middle + pan);
    }
    p.key(Qt::Key_B);
    QCOMPARE(p.canvas->tool(), ImageCanvas::Tool::brush);
    p.canvas->setBrushSize(brush);
    QCOMPARE(paintedCount(p.mask()), 0);

    // The view as the user sees it: the image centred, then moved by the drag. The pointer goes to
    // the pixel's centre, rounded to a widget pixel, which moves it by at most 0.5 / zoom image pixels.
    const QPointF imageCenter(kImageSize.width() / 2.0, kImageSize.height() / 2.0);
    const QPointF viewCenter = imageCenter - QPointF(pan) / zoom;
    const QPointF target = QPointF(pixel) + QPointF(0.5, 0.5);
    const QPoint widgetPos = (QPointF(middle) + (target - viewCenter) * zoom).toPoint();
    p.stroke({widgetPos});

    const QImage& mask = p.mask();
    QCOMPARE(mask.size(), kImageSize);
    QVERIFY(painted(mask, pixel.x(), pixel.y()));
    const double slack = 0.5 / zoom + 0.75;
    const double r = brush / 2.0;
    double sx = 0, sy = 0;
    int n = 0;
    for (int y = 0; y < mask.height(); ++y)
      for (int x = 0; x < mask.width(); ++x) {
        const double d = std::hypot(x + 0.5 - target.x(), y + 0.5 - target.y());
        if (painted(mask, x, y)) {
          QVERIFY2(d <= r + slack, qPrintable(QStringLiteral("(%1, %2) painted, %3 px away").arg(x).arg(y).arg(d)));
          sx += x + 0.5, sy += y + 0.5, ++n;
        } else {
          QVERIFY2(d >= r - slack, qPrintable(QStringLiteral("(%1, %2) unpainted, %3 px away").arg(x).arg(y).arg(d)));
        }
      }
    QVERIFY(std::hypot(sx / n - target.x(), sy / n - target.y()) <= slack);
    QVERIFY(!p.canvas->mask()->isEmpty());
  }

  void strokeCoversTheDraggedPath() {
    Painter p;
    QVERIFY(p.show());
    p.canvas->setZoom(2.0);
    p.key(Qt::Key_B);
    p.canvas->setBrushSize(4);
    // At zoom 2 with the image centred, widget (180, 180) is image (50, 60) and (380, 180) is (150, 60).
    p.stroke({{180, 180}, {260, 180}, {380, 180}});
    QCOMPARE(p.canvas->mask()->undoStack()->count(), 1);  // press..release is one undo step
    for (int x = 50; x < 150; ++x) QVERIFY2(painted(p.mask(), x, 60), qPrintable(QString::number(x)));
    QVERIFY(!painted(p.mask(), 45, 60));
    QVERIFY(!painted(p.mask(), 100, 65));
    QVERIFY(!painted(p.mask(), 100, 55));
  }

  void eraserRemoves() {
    Painter p;
    QVERIFY(p.show());
    p.canvas->setActualSize();
    p.key(Qt::Key_B);
    p.canvas->setBrushSize(30);
    const QPoint center(240, 180);  // image (80, 60)
    p.stroke({center});
    QVERIFY(painted(p.mask(), 80, 60) && painted(p.mask(), 80 + 10, 60));
    p.key(Qt::Key_E);
    QCOMPARE(p.canvas->tool(), ImageCanvas::Tool::eraser);
    QVERIFY(p.tools->eraserAction()->isChecked() && !p.tools->brushAction()->isChecked());
    p.canvas->setBrushSize(10);
    p.stroke({center});
    QVERIFY(!painted(p.mask(), 80, 60));
    QVERIFY(painted(p.mask(), 80 + 10, 60));  // outside the eraser, inside the brush

    // Pressing the picked tool's key again goes back to panning: the left button no longer paints.
    p.key(Qt::Key_E);
    QCOMPARE(p.canvas->tool(), ImageCanvas::Tool::pan);
    const QImage before = p.mask();
    p.stroke({{100, 100}, {120, 120}});
    QCOMPARE(p.mask(), before);
  }

  void bracketsChangeTheBrushSize_data() {
    QTest::addColumn<int>("start");
    QTest::addColumn<QString>("keys");
    QTest::addColumn<int>("expected");
    QTest::newRow("larger") << 48 << "]" << 60;
    QTest::newRow("smaller") << 48 << "[" << 38;
    QTest::newRow("small sizes still grow") << 1 << "]]" << 3;
    QTest::newRow("not below 1") << 2 << "[[[" << 1;
    QTest::newRow("not above 512") << 500 << "]]" << 512;
    QTest::newRow("there and back") << 20 << "]][[" << 20;
  }

  void bracketsChangeTheBrushSize() {
    QFETCH(int, start);
    QFETCH(QString, keys);
    QFETCH(int, expected);
    Painter p;
    QVERIFY(p.show());
    p.canvas->setBrushSize(start);
    for (const QChar key : keys) p.key(key == QLatin1Char(']') ? Qt::Key_BracketRight : Qt::Key_BracketLeft);
    QCOMPARE(p.canvas->brushSize(), expected);
    QCOMPARE(p.tools->findChild<QLabel*>(QStringLiteral("brushSizeLabel"))->text(), QStringLiteral("%1 px").arg(expected));
  }

  void undoAndRedoRestoreTheMaskExactly() {
    Painter p;
    QVERIFY(p.show());
    p.canvas->setActualSize();
    QList<QImage> states{p.mask().copy()};
    p.key(Qt::Key_B);
    p.canvas->setBrushSize(20);
    p.stroke({{200, 150}, {230, 160}, {260, 200}});
    states << p.mask().copy();
    p.canvas->setBrushSize(7);
    p.stroke({{250, 130}, {300, 140}});
    states << p.mask().copy();
    p.key(Qt::Key_E);
    p.stroke({{180, 120}, {280, 220}});
    states << p.mask().copy();
    QCOMPARE(p.canvas->mask()->undoStack()->count(), 3);
    for (qsizetype i = 1; i < states.size(); ++i) QVERIFY(states[i] != states[i - 1]);

    for (qsizetype i = states.size() - 2; i >= 0; --i) {
      p.key(Qt::Key_Z, Qt::ControlModifier);
      QVERIFY2(p.mask() == states[i], qPrintable(QStringLiteral("after undo to state %1").arg(i)));
    }
    QVERIFY(p.canvas->mask()->isEmpty());
    for (qsizetype i = 1; i < states.size(); ++i) {
      p.key(Qt::Key_Z, Qt::ControlModifier | Qt::ShiftModifier);
      QVERIFY2(p.mask() == states[i], qPrintable(QStringLiteral("after redo to state %1").arg(i)));
    }
  }

  void clearAndInvert() {
    Painter p;
    QVERIFY(p.show());
    QSignalSpy emptied(p.canvas->mask(), &fisedit::ui::PaintedMask::emptyChanged);
    QVERIFY(!p.tools->clearAction()->isEnabled());  // nothing to clear yet
    p.key(Qt::Key_B);
    p.stroke({{200, 150}, {260, 200}});
    const QImage painting = p.mask().copy();
    QCOMPARE(emptied.count(), 1);
    QCOMPARE(emptied.last().first().toBool(), false);
    QVERIFY(p.tools->clearAction()->isEnabled());

    p.tools->invertAction()->trigger();
    for (int y = 0; y < kImageSize.height(); ++y)
      for (int x = 0; x < kImageSize.width(); ++x)
        QCOMPARE(qGray(p.mask().pixel(x, y)), 255 - qGray(painting.pixel(x, y)));
    const QImage inverted = p.mask().copy();

    p.tools->clearAction()->trigger();
    QCOMPARE(paintedCount(p.mask()), 0);
    QVERIFY(p.canvas->mask()->isEmpty());
    QCOMPARE(emptied.last().first().toBool(), true);

    p.key(Qt::Key_Z, Qt::ControlModifier);
    QCOMPARE(p.mask(), inverted);
    QVERIFY(!p.canvas->mask()->isEmpty());
    p.key(Qt::Key_Z, Qt::ControlModifier);
    QCOMPARE(p.mask(), painting);
  }

  void aNewImageStartsABlankMask() {
    Painter p;
    QVERIFY(p.show());
    p.key(Qt::Key_B);
    p.stroke({{240, 180}});
    QVERIFY(!p.canvas->mask()->isEmpty());
    QImage next(QSize(64, 64), QImage::Format_RGB888);
    next.fill(Qt::white);
    p.canvas->setImage(next);
    QVERIFY(p.canvas->mask()->isEmpty());
    QCOMPARE(p.mask().size(), QSize(64, 64));
    QCOMPARE(p.canvas->mask()->undoStack()->count(), 0);  // the old image's strokes do not apply
    QCOMPARE(p.canvas->tool(), ImageCanvas::Tool::brush);  // the tool stays picked

    p.canvas->clear();
    QCOMPARE(p.canvas->tool(), ImageCanvas::Tool::pan);  // nothing to paint on
    QVERIFY(!p.tools->brushAction()->isEnabled());
  }
};

QTEST_MAIN(TestMaskPainting)
#include "test_mask_painting.moc"
