// Generating and editing from the window through the real worker and engine (tiny SD2 model on the
// CPU): the image reaches the canvas and the history, a prompt-only change becomes an edit that keeps
// every pixel outside its reported region, a painted mask confines the edit to the painted area, Esc
// cancels without touching the history, an exported PNG carries AUTOMATIC1111's parameters, and a
// job shows previews of its latents before its image and the memory it holds in the status bar.
#include "test_support.h"
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/painted_mask.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include "io/image_file.h"

#include <QtTest>
#include <QAction>
#include <QSpinBox>
#include <QCheckBox>
#include <QComboBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTreeWidget>

#include <algorithm>

using fisedit::ui::MainWindow;

namespace {

constexpr int kJobTimeoutMs = 120000;

QString tinyModel() { return QString::fromStdString((fisedit::test::reference_dir() / "tiny-sd2/model").string()); }

QPushButton* generateButton(const MainWindow& w) { return w.findChild<QPushButton*>(QStringLiteral("generateButton")); }

// Loads the tiny model and sets what every test here uses: 4 steps, 128x128, the CPU.
bool prepare(MainWindow& window) {
  QSignalSpy loaded(&window, &MainWindow::modelLoaded);
  QSignalSpy ready(&window, &MainWindow::engineReady);
  window.openModel(tinyModel());
  if (!QTest::qWaitFor([&] { return loaded.count() == 1 && ready.count() >= 1; }, kJobTimeoutMs)) return false;
  window.parameters()->setDevice(fisedit::DeviceChoice::cpu);
  window.parameters()->setSteps(4);
  window.parameters()->setSize(128, 128);
  return true;
}

// Submits with Ctrl+Enter in the prompt field and waits for the job; true when it made a node.
bool submitAndWait(MainWindow& window) {
  QSignalSpy finished(&window, &MainWindow::jobFinished);
  auto* prompt = window.findChild<QPlainTextEdit*>(QStringLiteral("promptEdit"));
  prompt->setFocus();
  QTest::keyClick(prompt, Qt::Key_Return, Qt::ControlModifier);
  if (!window.isBusy()) return false;  // the shortcut did not start a job
  if (!QTest::qWaitFor([&] { return finished.count() == 1; }, kJobTimeoutMs)) return false;
  return finished.first().first().toBool();
}

// Pixels within `radius` of a white pixel of `mask` in the chessboard metric (max of |dx| and |dy|):
// the engine's square dilation and box blur grow a region by exactly that.
QImage chebyshevDilate(const QImage& mask, int radius) {
  const int w = mask.width(), h = mask.height();
  QImage rows(mask.size(), QImage::Format_Grayscale8), out(mask.size(), QImage::Format_Grayscale8);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      int v = 0;
      for (int i = std::max(0, x - radius); i <= std::min(w - 1, x + radius); ++i) v = std::max(v, qGray(mask.pixel(i, y)));
      rows.scanLine(y)[x] = static_cast<uchar>(v);
    }
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      int v = 0;
      for (int j = std::max(0, y - radius); j <= std::min(h - 1, y + radius); ++j) v = std::max(v, int(rows.constScanLine(j)[x]));
      out.scanLine(y)[x] = static_cast<uchar>(v);
    }
  return out;
}

}  // namespace

class TestWindowGeneration : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() { QStandardPaths::setTestModeEnabled(true); }

  void generatesThenEditsOnlyTheChangedRegion() {
    MainWindow window;
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QVERIFY(prepare(window));
    window.promptEditor()->setPrompts(QStringLiteral("a photo of a cat"), QString());
    QCOMPARE(generateButton(window)->text(), QStringLiteral("Generate"));

    QVERIFY(submitAndWait(window));
    QCOMPARE(window.canvas()->image().size(), QSize(128, 128));
    QCOMPARE(window.history()->nodeCount(), 1);
    const quint64 root = *window.history()->currentNode();
    const QImage base = window.canvas()->image();
    QVERIFY(window.findChild<QLabel*>(QStringLiteral("deviceLabel"))->text().contains(QLatin1String("CPU")));

    // The random-weight model's edits move the whole image, which would then be re-rendered whole:
    // keep a region, so that there is an outside to check.
    window.findChild<QCheckBox*>(QStringLiteral("wholeImageIfGlobalCheck"))->setChecked(false);
    // Only the prompt differs: the button says, before the press, that this will be an edit.
    window.promptEditor()->setPrompts(QStringLiteral("a photo of a cat wearing a hat"), QString());
    QVERIFY(window.willEdit());
    QVERIFY2(generateButton(window)->text().startsWith(QLatin1String("Edit")), qPrintable(generateButton(window)->text()));
    QVERIFY(submitAndWait(window));

    QCOMPARE(window.history()->nodeCount(), 2);
    const auto* root_item = window.history()->tree()->topLevelItem(0);
    QCOMPARE(root_item->childCount(), 1);
    const auto* edit = window.history()->record(*window.history()->currentNode());
    QVERIFY(edit->isEdit());
    QCOMPARE(*edit->parent, root);
    QVERIFY2(root_item->child(0)->text(0).contains(QLatin1String("+hat")), qPrintable(root_item->child(0)->text(0)));
    // Its speed-up against the root's full generation, from the two recorded times.
    const double speedup = window.history()->record(root)->totalMs / edit->totalMs;
    QVERIFY2(root_item->child(0)->text(0).contains(QStringLiteral("%1× faster").arg(speedup, 0, 'f', 1)),
             qPrintable(root_item->child(0)->text(0)));
    QCOMPARE(generateButton(window)->text(), QStringLiteral("Generate"));  // nothing differs any more

    const QImage edited = window.canvas()->image().convertToFormat(QImage::Format_RGB888);
    const QImage region = edit->changedRegion;
    QCOMPARE(region.size(), QSize(128, 128));
    QVERIFY(window.canvas()->hasChangedRegion());
    int outside = 0;
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x)
        if (qGray(region.pixel(x, y)) == 0) {
          ++outside;
          QCOMPARE(edited.pixel(x, y), base.pixel(x, y));
        }
    QVERIFY2(outside > 0, "the edit re-rendered the whole image: nothing was checked");

    // The overlay toggles with M; selecting the root shows it again and makes it the next base.
    window.findChild<QAction*>(QStringLiteral("overlayAction"))->trigger();
    QVERIFY(window.canvas()->overlayVisible());
    window.history()->selectNode(root);
    QCOMPARE(window.canvas()->image(), base);
    QCOMPARE(window.promptEditor()->prompt(), QStringLiteral("a photo of a cat"));
  }

  void paintedMaskConfinesTheEdit() {
    MainWindow window;
    window.show();
    QVERIFY(QTest::qWaitForWindowActive(&window));  // B is a window shortcut
    QVERIFY(prepare(window));
    window.promptEditor()->setPrompts(QStringLiteral("a photo of a cat"), QString());
    QVERIFY(submitAndWait(window));
    const QImage base = window.canvas()->image();
    auto* mode = window.findChild<QComboBox*>(QStringLiteral("maskModeCombo"));
    QCOMPARE(mode->currentData().toInt(), int(fisedit::MaskMode::automatic));

    // A stroke over the image as shown (fitted to the window): image (30, 40) -> (70, 40) -> (70, 60).
    auto* canvas = window.canvas();
    QTest::keyClick(canvas, Qt::Key_B);
    QCOMPARE(canvas->tool(), fisedit::ui::ImageCanvas::Tool::brush);
    canvas->setBrushSize(16);
    const QPointF canvasCenter = QRectF(canvas->rect()).center();
    const auto at = [&](double x, double y) { return (canvasCenter + (QPointF(x, y) - QPointF(64, 64)) * canvas->zoom()).toPoint(); };
    QTest::mousePress(canvas, Qt::LeftButton, Qt::NoModifier, at(30, 40));
    QTest::mouseMove(canvas, at(70, 40));
    QTest::mouseMove(canvas, at(70, 60));
    QTest::mouseRelease(canvas, Qt::LeftButton, Qt::NoModifier, at(70, 60));
    const QImage painted = canvas->mask()->image().copy();
    QVERIFY(qGray(painted.pixel(50, 40)) == 255 && qGray(painted.pixel(70, 55)) == 255 && qGray(painted.pixel(100, 100)) == 0);

    // Painting switches the region to "painted" and says so.
    QCOMPARE(mode->currentData().toInt(), int(fisedit::MaskMode::painted));
    QVERIFY2(window.statusBar()->currentMessage().contains(QLatin1String("painted")), qPrintable(window.statusBar()->currentMessage()));
    window.promptEditor()->setPrompts(QStringLiteral("a photo of a dog"), QString());
    QVERIFY2(generateButton(window)->text().contains(QLatin1String("painted region")), qPrintable(generateButton(window)->text()));
    QVERIFY(submitAndWait(window));

    const auto* edit = window.history()->record(*window.history()->currentNode());
    QVERIFY(edit->isEdit());
    QCOMPARE(edit->stats.detect_steps, 0);  // a painted region needs no detection
    const QImage region = edit->changedRegion;
    const QImage edited = window.canvas()->image().convertToFormat(QImage::Format_RGB888);
    // The engine re-renders the 8x8 blocks the paint touches (up to 7 px past it), grown by the edit
    // margin the panel shows (latent pixels of 8 px), and feathers the composite over twice the
    // feather (8 px by default): nothing changes farther than 8 + 8 * margin + 16 px out.
    const int margin = window.findChild<QSpinBox*>(QStringLiteral("marginSpin"))->value();
    const QImage reach = chebyshevDilate(painted, 8 + 8 * margin + 2 * 8);
    int changed = 0;
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 128; ++x) {
        const bool inRegion = qGray(region.pixel(x, y)) != 0;
        if (qGray(painted.pixel(x, y)) == 255) QVERIFY2(inRegion, qPrintable(QStringLiteral("painted (%1, %2) outside the region").arg(x).arg(y)));
        if (!inRegion) {
          QCOMPARE(edited.pixel(x, y), base.pixel(x, y));
          continue;
        }
        ++changed;
        QVERIFY2(qGray(reach.pixel(x, y)) == 255, qPrintable(QStringLiteral("(%1, %2) changed, far from the paint").arg(x).arg(y)));
      }
    QVERIFY(changed > 0 && changed < 128 * 128);
    QVERIFY2(edited != base, "the painted edit changed nothing");

    // The mask belonged to the base image: the edit's own image starts blank, and the region with it.
    QVERIFY(canvas->mask()->isEmpty());
    QCOMPARE(mode->currentData().toInt(), int(fisedit::MaskMode::automatic));
  }

  void previewsWhileGeneratingAndMemoryInStatusBar() {
    MainWindow window;
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QVERIFY(prepare(window));
    window.parameters()->setSteps(8);
    window.promptEditor()->setPrompts(QStringLiteral("a lighthouse"), QString());
    auto* canvas = window.canvas();
    int previewsWhileBusy = 0;
    connect(canvas, &fisedit::ui::ImageCanvas::previewShown, this, [&] {
      if (window.isBusy() && canvas->showingPreview() && canvas->image().isNull()) ++previewsWhileBusy;
    });
    QVERIFY(submitAndWait(window));
    // The latents showed before the decoded image (the canvas was still empty then), which replaced them.
    QVERIFY2(previewsWhileBusy >= 1, "no preview during the generation");
    QVERIFY(!canvas->showingPreview());
    QCOMPARE(canvas->image().size(), QSize(128, 128));

    window.promptEditor()->setPrompts(QStringLiteral("a lighthouse at sunset"), QString());
    QVERIFY(window.willEdit());
    QVERIFY(submitAndWait(window));
    QVERIFY(!canvas->showingPreview());
    // On the CPU the backend reports no device memory: only the activation caches, which two nodes fill.
    const QString memory = window.findChild<QLabel*>(QStringLiteral("memoryLabel"))->text();
    QVERIFY2(QRegularExpression(QStringLiteral("^cache [1-9][0-9.]* (KiB|MiB|GiB)$")).match(memory).hasMatch(),
             qPrintable(memory));
  }

  void escapeCancelsWithoutTouchingHistory() {
    MainWindow window;
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QVERIFY(prepare(window));
    window.promptEditor()->setPrompts(QStringLiteral("a lighthouse"), QString());
    QVERIFY(submitAndWait(window));
    QCOMPARE(window.history()->nodeCount(), 1);

    window.parameters()->setSteps(150);
    window.promptEditor()->setPrompts(QStringLiteral("a lighthouse at night"), QString());
    QVERIFY(!window.willEdit());  // the steps changed: a new image, not an edit
    QSignalSpy finished(&window, &MainWindow::jobFinished);
    generateButton(window)->click();
    QVERIFY(window.isBusy());
    QVERIFY(!generateButton(window)->isEnabled());
    auto* progress = window.findChild<QProgressBar*>(QStringLiteral("jobProgress"));
    QTRY_VERIFY_WITH_TIMEOUT(progress->value() >= 1, kJobTimeoutMs);
    QVERIFY2(progress->text().contains(QLatin1String("left")), qPrintable(progress->text()));
    QTest::keyClick(&window, Qt::Key_Escape);
    QVERIFY2(progress->text().contains(QLatin1String("Cancelling")), qPrintable(progress->text()));
    QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kJobTimeoutMs);
    QCOMPARE(finished.first().first().toBool(), false);
    QVERIFY(!window.findChild<QWidget*>(QStringLiteral("errorBanner"))->isVisible());  // not an error
    QCOMPARE(window.history()->nodeCount(), 1);
    QVERIFY(generateButton(window)->isEnabled());
  }

  void exportsPngWithParameters() {
    MainWindow window;
    window.show();
    QVERIFY(prepare(window));
    window.promptEditor()->setPrompts(QStringLiteral("a red bicycle"), QStringLiteral("blurry"));
    QVERIFY(submitAndWait(window));

    const fisedit::test::TempDir dir;
    const auto path = dir / "export.png";
    QVERIFY(window.exportImage(QString::fromStdString(path.string())));
    const auto chunks = fisedit::read_png_text(path);
    QString parameters;
    for (const auto& [key, text] : chunks)
      if (key == "parameters") parameters = QString::fromStdString(text);
    QVERIFY2(parameters.startsWith(QLatin1String("a red bicycle\nNegative prompt: blurry\n")), qPrintable(parameters));
    for (const char* field : {"Steps: 4", "Sampler: DDIM", "CFG scale: 7.5", "Seed: 42", "Size: 128x128", "Model: model"})
      QVERIFY2(parameters.contains(QLatin1String(field)), qPrintable(parameters));

    const auto png = fisedit::read_png(path);
    QCOMPARE(png.width, 128);
    const QImage shown = window.canvas()->image();
    QCOMPARE(QByteArray(reinterpret_cast<const char*>(png.pixels.data()), 3 * 128),
             QByteArray(reinterpret_cast<const char*>(shown.constScanLine(0)), 3 * 128));
  }
};

QTEST_MAIN(TestWindowGeneration)
#include "test_window_generation.moc"
