// Habits users bring from other tools (issue 14 item 4), through the real window on the built-in
// toy-world model: Copy Image (the pixels, and the PNG export writes with its parameters), Copy and
// Paste Parameters, the before/after split on the canvas, the Help menu (the guide, the shortcut list
// read from the actions) and the size presets led by the model's native size.
#include "test_support.h"
#include "window_driver.h"
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include "io/image_file.h"

#include <QtTest>
#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDialog>
#include <QFile>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QToolButton>
#include <QTreeWidget>

#include <algorithm>
#include <memory>

using fisedit::ui::MainWindow;

namespace {

using fisedit::test::kBlueHouse;
using fisedit::test::kHouse;
using fisedit::test::submitPrompt;
using fisedit::test::toyModel;


template <typename T>
T* named(const QObject& parent, const char* name) {
  return parent.findChild<T*>(QLatin1String(name));
}

int distance(QRgb a, QRgb b) {
  return std::abs(qRed(a) - qRed(b)) + std::abs(qGreen(a) - qGreen(b)) + std::abs(qBlue(a) - qBlue(b));
}

QString keysOf(const QAction* action) {
  QStringList keys;
  for (const QKeySequence& key : action->shortcuts()) keys << key.toString(QKeySequence::NativeText);
  return keys.join(QStringLiteral(", "));
}

// What the grabbed canvas shows where the before and after images differ: each such image pixel,
// away from the divider and the captions, must look like the before image left of the divider and
// like the after image right of it. Empty when it does; else what is wrong.
QString compareProblem(fisedit::ui::ImageCanvas& canvas, const QImage& beforeImage, const QImage& afterImage) {
  const QImage shot = canvas.grab().toImage().convertToFormat(QImage::Format_RGB888);
  const QImage before = beforeImage.convertToFormat(QImage::Format_RGB888);
  const QImage after = afterImage.convertToFormat(QImage::Format_RGB888);
  const QPointF origin = canvas.mapToImage(QPointF(0, 0));  // image coordinates of the widget's corner
  const double divider = canvas.compareDividerX();
  int left = 0, leftRight = 0, right = 0, rightRight = 0;
  for (int y = 0; y < before.height(); ++y)
    for (int x = 0; x < before.width(); ++x) {
      if (distance(before.pixel(x, y), after.pixel(x, y)) < 90) continue;
      const QPointF at = (QPointF(x + 0.5, y + 0.5) - origin) * canvas.zoom();
      if (std::abs(at.x() - divider) < 6 || at.y() < 36 || !shot.rect().contains(at.toPoint())) continue;
      const QRgb shown = shot.pixel(at.toPoint());
      const bool likeBefore = distance(shown, before.pixel(x, y)) < distance(shown, after.pixel(x, y));
      if (at.x() < divider) {
        ++left;
        leftRight += likeBefore;
      } else {
        ++right;
        rightRight += !likeBefore;
      }
    }
  if (left < 10 || right < 10)
    return QStringLiteral("too few differing pixels on a side to tell (%1 left, %2 right)").arg(left).arg(right);
  if (leftRight < left * 9 / 10) return QStringLiteral("left of the divider: %1 of %2 from the before image").arg(leftRight).arg(left);
  if (rightRight < right * 9 / 10) return QStringLiteral("right of the divider: %1 of %2 from the after image").arg(rightRight).arg(right);
  return {};
}

}  // namespace

class TestAppHabits : public QObject {
  Q_OBJECT

private slots:
  // One window for all: the toy-world model, a red house and its edit to a blue one.
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_dir.isValid());
    m_window = std::make_unique<MainWindow>();
    MainWindow& w = *m_window;
    w.resize(1280, 800);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(fisedit::test::prepareWindow(w, toyModel()));
    w.parameters()->setSteps(10);
    w.parameters()->setSize(256, 256);  // the model's own: smaller, the house is too small to compare
    // Nothing to copy or compare yet.
    for (const char* name : {"copyImageAction", "canvasCopyAction", "copyParametersAction", "compareAction"}) {
      auto* action = named<QAction>(w, name);
      QVERIFY2(action, name);
      QVERIFY2(!action->isEnabled(), name);
    }
    QVERIFY(submitPrompt(w, kHouse));
    QVERIFY(submitPrompt(w, kBlueHouse));
    QVERIFY(w.history()->record(*w.history()->currentNode())->isEdit());
  }

  void cleanupTestCase() { m_window.reset(); }

  // The clipboard gets the shown image, as pixels and as the exported PNG, parameters and all; plain
  // Ctrl+C copies it from the canvas and leaves text boxes their own copy.
  void copyImage() {
    MainWindow& w = *m_window;
    QClipboard* clipboard = QGuiApplication::clipboard();
    auto* copy = named<QAction>(w, "copyImageAction");
    QVERIFY(copy->isEnabled());
    QCOMPARE(copy->shortcut(), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C));
    clipboard->clear();
    copy->trigger();
    const QImage shown = w.canvas()->image().convertToFormat(QImage::Format_RGB888);
    QCOMPARE(clipboard->image().convertToFormat(QImage::Format_RGB888), shown);
    const QByteArray png = clipboard->mimeData()->data(QStringLiteral("image/png"));
    QVERIFY(!png.isEmpty());
    QCOMPARE(QImage::fromData(png, "PNG").convertToFormat(QImage::Format_RGB888), shown);
    const QString exported = m_dir.filePath(QStringLiteral("export.png"));
    QVERIFY(w.exportImage(exported));
    QFile file(exported);
    QVERIFY(file.open(QIODevice::ReadOnly));
    QCOMPARE(png, file.readAll());  // the same bytes: the parameters chunk included
    QVERIFY(png.contains("parameters"));

    // Ctrl+C on the canvas copies the image; in the prompt box it copies the prompt's text.
    w.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    w.canvas()->setFocus();
    QTRY_VERIFY(w.canvas()->hasFocus());
    clipboard->clear();
    QTest::keyClick(w.canvas(), Qt::Key_C, Qt::ControlModifier);
    QCOMPARE(clipboard->image().convertToFormat(QImage::Format_RGB888), shown);
    auto* prompt = named<QPlainTextEdit>(w, "promptEdit");
    QVERIFY(prompt);
    prompt->setFocus();
    QTRY_VERIFY(prompt->hasFocus());
    clipboard->clear();
    QTest::keyClick(prompt, Qt::Key_A, Qt::ControlModifier);
    QTest::keyClick(prompt, Qt::Key_C, Qt::ControlModifier);
    QCOMPARE(clipboard->text(), kBlueHouse);
    QVERIFY(!clipboard->mimeData()->hasImage());

    // Copy Parameters: the text export writes into the PNG.
    named<QAction>(w, "copyParametersAction")->trigger();
    const auto chunks = fisedit::read_png_text(std::filesystem::path(exported.toStdString()));
    const auto parameters = std::find_if(chunks.begin(), chunks.end(), [](const auto& c) { return c.first == "parameters"; });
    QVERIFY(parameters != chunks.end());
    QCOMPARE(clipboard->text(), QString::fromStdString(parameters->second));
    QVERIFY(clipboard->text().startsWith(kBlueHouse));
  }

  // Paste Parameters fills the prompts and the panel from A1111 text on the clipboard.
  void pasteParameters() {
    MainWindow& w = *m_window;
    const QString before = w.promptEditor()->prompt();
    QGuiApplication::clipboard()->setText(QStringLiteral(
        "a green tree at the top left, sand background\nNegative prompt: blurry\n"
        "Steps: 7, Sampler: Euler a, CFG scale: 5, Seed: 99, Size: 192x128"));
    named<QAction>(w, "pasteParametersAction")->trigger();
    QCOMPARE(w.promptEditor()->prompt(), QStringLiteral("a green tree at the top left, sand background"));
    QCOMPARE(w.promptEditor()->negativePrompt(), QStringLiteral("blurry"));
    QCOMPARE(named<QSpinBox>(w, "stepsSpin")->value(), 7);
    QCOMPARE(named<QSpinBox>(w, "widthSpin")->value(), 192);
    QCOMPARE(named<QSpinBox>(w, "heightSpin")->value(), 128);
    QCOMPARE(named<QComboBox>(w, "sizePreset")->currentText(), QStringLiteral("Custom"));
    // Back to the shown image's parameters for the tests after this one.
    w.parameters()->showRequest(w.history()->record(*w.history()->currentNode())->request);
    w.promptEditor()->setPrompts(before, QString());
  }

  // The divider splits the parent's image (left) from the edit (right); dragging it moves the split,
  // which stays on the same image pixels through zoom.
  void compareBeforeAfter() {
    MainWindow& w = *m_window;
    auto* canvas = w.canvas();
    auto* compare = named<QAction>(w, "compareAction");
    QVERIFY(compare->isEnabled() && !canvas->comparing());
    QCOMPARE(compare->shortcut(), QKeySequence(Qt::CTRL | Qt::Key_B));
    compare->trigger();
    QVERIFY(canvas->comparing());
    const auto* edit = w.history()->record(*w.history()->currentNode());
    const QImage before = w.history()->record(*edit->parent)->image;
    const QImage after = edit->image;

    // Where the edit changed the image, its middle column: the divider goes there so both sides show
    // a change.
    QList<int> columns;
    for (int y = 0; y < after.height(); ++y)
      for (int x = 0; x < after.width(); ++x)
        if (distance(before.pixel(x, y), after.pixel(x, y)) >= 90) columns << x;
    QVERIFY2(columns.size() > 40, "the edit changed too little to compare");
    std::sort(columns.begin(), columns.end());
    const double target = (columns[columns.size() / 2] + 0.5) / after.width();

    // Over the divider the pointer offers to drag it; a drag moves it.
    const int y = canvas->height() / 2 + 30;  // beside the grip, as a user might grab it
    const QPoint grab(qRound(canvas->compareDividerX()), y);
    QTest::mouseMove(canvas, grab);
    QTRY_COMPARE(canvas->cursor().shape(), Qt::SplitHCursor);
    const QPointF origin = canvas->mapToImage(QPointF(0, 0));
    const QPoint drop(qRound((target * after.width() - origin.x()) * canvas->zoom()), y);
    QTest::mousePress(canvas, Qt::LeftButton, {}, grab);
    QTest::mouseMove(canvas, (grab + drop) / 2);
    QTest::mouseMove(canvas, drop);
    QTest::mouseRelease(canvas, Qt::LeftButton, {}, drop);
    QVERIFY2(std::abs(canvas->compareSplit() - target) < 1.5 / after.width(),
             qPrintable(QStringLiteral("split %1, wanted %2").arg(canvas->compareSplit()).arg(target)));
    QString problem = compareProblem(*canvas, before, after);
    QVERIFY2(problem.isEmpty(), qPrintable(problem));

    // Zoomed in (about the middle), the divider stays on its pixels.
    const double split = canvas->compareSplit();
    canvas->zoomIn();
    QCOMPARE(canvas->compareSplit(), split);
    problem = compareProblem(*canvas, before, after);
    QVERIFY2(problem.isEmpty(), qPrintable(problem));
    canvas->fitToWindow();

    // The generation has no parent to compare with: the action waits, still checked, for the next edit.
    const quint64 editId = *w.history()->currentNode();
    w.history()->selectNode(*edit->parent);
    QVERIFY(!compare->isEnabled() && compare->isChecked() && !canvas->comparing());
    w.history()->selectNode(editId);
    QVERIFY(compare->isEnabled() && canvas->comparing());
    compare->trigger();
    QVERIFY(!canvas->comparing());
  }

  // Help > Keyboard Shortcuts lists every action's real shortcut and the canvas's keys; Help > User
  // Guide shows the guide, its images found beside it.
  void helpMenu() {
    MainWindow& w = *m_window;
    named<QAction>(w, "shortcutsAction")->trigger();
    auto* dialog = named<QDialog>(w, "shortcutsDialog");
    QVERIFY(dialog && dialog->isVisible());
    auto* list = named<QTreeWidget>(*dialog, "shortcutList");
    QVERIFY(list);
    QMultiHash<QString, QString> rows;
    for (QTreeWidgetItemIterator it(list); *it; ++it) rows.insert((*it)->text(0), (*it)->text(1));
    int checked = 0;
    for (const QAction* action : w.findChildren<QAction*>()) {
      if (action->shortcuts().isEmpty()) continue;
      const QString text = action->text().remove(QLatin1Char('&'));
      QVERIFY2(rows.values(text).contains(keysOf(action)), qPrintable(text + QStringLiteral(": ") + keysOf(action)));
      ++checked;
    }
    QVERIFY(checked >= 15);
    QVERIFY(rows.values(QStringLiteral("Copy Image")).contains(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C).toString(QKeySequence::NativeText)));
    QVERIFY(rows.values(QStringLiteral("Compare Before/After")).contains(QKeySequence(Qt::CTRL | Qt::Key_B).toString(QKeySequence::NativeText)));
    QVERIFY(rows.values(QStringLiteral("Show the previous image (hold)")).contains(QStringLiteral("Space")));
    dialog->close();

    QVERIFY(MainWindow::userGuidePath().endsWith(QLatin1String("user-guide.md")));
    named<QAction>(w, "userGuideAction")->trigger();
    auto* guide = named<QDialog>(w, "userGuideDialog");
    QVERIFY(guide && guide->isVisible());
    auto* browser = named<QTextBrowser>(*guide, "userGuideBrowser");
    QVERIFY(browser);
    const QString text = browser->toPlainText();
    QVERIFY2(text.startsWith(QLatin1String("fisedit user guide")), qPrintable(text.left(80)));
    QVERIFY(text.contains(QLatin1String("Compare Before/After")));
    QVERIFY(!text.contains(QLatin1String("## ")));  // rendered, not shown as Markdown source
    const QImage screenshot = browser->document()->resource(QTextDocument::ImageResource,
                                                            QUrl(QStringLiteral("images/main-window.png"))).value<QImage>();
    QVERIFY(!screenshot.isNull());
    QVERIFY(screenshot.width() <= 760);
    guide->close();
  }

  // The model's native size comes first and is marked; then the common sizes, multiples of 8 within
  // the limits; a hand-typed size reads "Custom"; the swap button turns portrait into landscape.
  void sizePresets() {
    MainWindow& w = *m_window;
    auto* presets = named<QComboBox>(w, "sizePreset");
    auto* width = named<QSpinBox>(w, "widthSpin");
    auto* height = named<QSpinBox>(w, "heightSpin");
    QVERIFY(presets && width && height);
    QCOMPARE(w.model()->imageSize, 256);
    QCOMPARE(presets->itemText(0), QStringLiteral("256×256 (native)"));
    const QList<QSize> sizes = w.parameters()->sizePresets();
    QCOMPARE(sizes.first(), QSize(256, 256));
    for (const QSize common : {QSize(512, 512), QSize(768, 768), QSize(512, 768), QSize(768, 512), QSize(640, 448),
                               QSize(448, 640), QSize(1024, 1024)})
      QVERIFY(sizes.contains(common));
    for (const QSize& s : sizes)
      QVERIFY(s.width() % 8 == 0 && s.height() % 8 == 0 && s.width() <= width->maximum() && s.height() <= height->maximum());
    QCOMPARE(presets->itemText(presets->count() - 1), QStringLiteral("Custom"));

    presets->setCurrentIndex(presets->findText(QStringLiteral("768×512")));
    QCOMPARE(width->value(), 768);
    QCOMPARE(height->value(), 512);
    auto* swap = named<QToolButton>(w, "swapSizeButton");
    QVERIFY(swap);
    swap->click();
    QCOMPARE(width->value(), 512);
    QCOMPARE(height->value(), 768);
    QCOMPARE(presets->currentText(), QStringLiteral("512×768"));
    width->setValue(520);
    QCOMPARE(presets->currentText(), QStringLiteral("Custom"));
    width->setValue(512);
    QCOMPARE(presets->currentText(), QStringLiteral("512×768"));
    presets->setCurrentIndex(0);
    QCOMPARE(width->value(), 256);
    QCOMPARE(height->value(), 256);

    // An SD 2 768 model: its size first, marked, and not listed twice.
    w.parameters()->setModelSize(768);
    QCOMPARE(presets->itemText(0), QStringLiteral("768×768 (native)"));
    QCOMPARE(presets->currentIndex(), 0);
    QCOMPARE(w.parameters()->sizePresets().count(QSize(768, 768)), 1);
    QCOMPARE(width->value(), 768);
    w.parameters()->setModelSize(256);
  }

private:
  QTemporaryDir m_dir;
  std::unique_ptr<MainWindow> m_window;
};

QTEST_MAIN(TestAppHabits)
#include "test_app_habits.moc"
