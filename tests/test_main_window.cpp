// The main window against the real engine: a model loads off the UI thread and its facts reach the
// panel, the prompt counter counts with the model's tokenizer, and a failed load is shown without
// losing the model already loaded. And the edit options' attention control checkbox drives the edit
// request, off and disabled for a painted region.
#include "test_support.h"
#include "io/image_file.h"
#include "ui/main_window.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include <QtTest>
#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QLabel>
#include <QLineEdit>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStatusBar>
#include <QTemporaryDir>

using fisedit::ui::MainWindow;

namespace {

constexpr int kLoadTimeoutMs = 30000;

QString referenceModel(const char* relative) {
  return QString::fromStdString((fisedit::test::reference_dir() / relative).string());
}

template <class Widget>
Widget* named(const MainWindow& window, const char* name) {
  return window.findChild<Widget*>(QString::fromLatin1(name));
}

QString labelText(const MainWindow& window, const char* name) {
  const auto* label = window.findChild<QLabel*>(QString::fromLatin1(name));
  return label ? label->text() : QStringLiteral("<no QLabel named %1>").arg(QLatin1String(name));
}

// Opens `path` and waits for the window's answer; true when it loaded.
bool openAndWait(MainWindow& window, const QString& path) {
  QSignalSpy loaded(&window, &MainWindow::modelLoaded);
  QSignalSpy failed(&window, &MainWindow::loadFailed);
  window.openModel(path);
  if (!window.isLoading()) return false;  // the load must be in flight, not done on the UI thread
  if (!QTest::qWaitFor([&] { return loaded.count() + failed.count() > 0; }, kLoadTimeoutMs)) return false;
  return loaded.count() == 1;
}

}  // namespace

class TestMainWindow : public QObject {
  Q_OBJECT

private slots:
  void initTestCase() {
    // Keeps the test's "last model" out of the user's real fisedit settings.
    QStandardPaths::setTestModeEnabled(true);
    QSettings settings(QStringLiteral("fisedit"), QStringLiteral("fisedit"));
    settings.clear();
    QVERIFY2(settings.fileName().contains(QLatin1String(".qttest")), qPrintable(settings.fileName()));
  }

  void welcomeBannerWithoutModel() {
    MainWindow window;
    window.show();
    QVERIFY(!window.model());
    QVERIFY(window.findChild<QWidget*>(QStringLiteral("welcomeBanner"))->isVisible());
    QCOMPARE(labelText(window, "promptTokenCounter"), QStringLiteral("– / 75"));
  }

  void loadsModelAndCountsTokens() {
    MainWindow window;
    window.show();
    QVERIFY(openAndWait(window, referenceModel("tiny-sd2/model")));
    QCOMPARE(labelText(window, "familyValue"), QStringLiteral("SD2.x"));
    QCOMPARE(labelText(window, "predictionValue"), QStringLiteral("v_prediction"));
    QCOMPARE(labelText(window, "formatValue"), QStringLiteral("diffusers folder"));
    QVERIFY(!window.findChild<QWidget*>(QStringLiteral("welcomeBanner"))->isVisible());

    auto* prompt = window.findChild<QPlainTextEdit*>(QStringLiteral("promptEdit"));
    QVERIFY(prompt);
    QTest::keyClicks(prompt, QStringLiteral("a photo of a cat"));
    QCOMPARE(labelText(window, "promptTokenCounter"), QStringLiteral("5 / 75"));
    QCOMPARE(labelText(window, "negativePromptTokenCounter"), QStringLiteral("0 / 75"));

    // 80 words of one token each: a second chunk, and the tooltip says where it starts.
    prompt->setPlainText(QStringLiteral("cat ").repeated(75) + QStringLiteral("dog ").repeated(5));
    const auto* counter = window.findChild<QLabel*>(QStringLiteral("promptTokenCounter"));
    QCOMPARE(counter->text(), QStringLiteral("80 / 150"));
    QVERIFY(counter->styleSheet().isEmpty());
    QVERIFY2(counter->toolTip().contains(QStringLiteral("chunk 2 starts at “dog”")), qPrintable(counter->toolTip()));
    // BREAK starts a chunk early.
    prompt->setPlainText(QStringLiteral("a cat BREAK a dog"));
    QCOMPARE(counter->text(), QStringLiteral("4 / 150"));
    // Past 8 chunks the counter turns red and says the prompt will be refused.
    prompt->setPlainText(QStringLiteral("cat ").repeated(601));
    QCOMPARE(counter->text(), QStringLiteral("601 / 675"));
    QVERIFY(counter->styleSheet().contains(QLatin1String("color")));
    QVERIFY2(counter->toolTip().contains(QLatin1String("refused")), qPrintable(counter->toolTip()));

    const QSettings settings(QStringLiteral("fisedit"), QStringLiteral("fisedit"));
    QCOMPARE(settings.value(QStringLiteral("model/path")).toString(), referenceModel("tiny-sd2/model"));
  }

  void failedLoadKeepsPreviousModel() {
    MainWindow window;
    window.show();
    QVERIFY(openAndWait(window, referenceModel("tiny-sd2/model")));
    const QString missing = referenceModel("tiny-sd2/no-such-model");
    QVERIFY(!openAndWait(window, missing));

    const auto* banner = window.findChild<QWidget*>(QStringLiteral("errorBanner"));
    QVERIFY(banner->isVisible());
    const QString message = labelText(window, "errorMessage");
    QVERIFY2(message.contains(QLatin1String("no-such-model")), qPrintable(message));
    QVERIFY2(message.contains(QLatin1String("still loaded")), qPrintable(message));

    QCOMPARE(labelText(window, "familyValue"), QStringLiteral("SD2.x"));
    QCOMPARE(labelText(window, "predictionValue"), QStringLiteral("v_prediction"));
    QCOMPARE(window.findChild<QLineEdit*>(QStringLiteral("sourceValue"))->text(), referenceModel("tiny-sd2/model"));
    QVERIFY(window.model());

    // A failed path is not remembered: the next start reopens the model that worked.
    const QSettings settings(QStringLiteral("fisedit"), QStringLiteral("fisedit"));
    QCOMPARE(settings.value(QStringLiteral("model/path")).toString(), referenceModel("tiny-sd2/model"));
  }

  void singleFileTakesConfigFolder() {
    MainWindow window;
    window.show();
    QVERIFY(openAndWait(window, referenceModel("tiny-sd2/single-file.safetensors")));
    QCOMPARE(labelText(window, "formatValue"), QStringLiteral("single-file checkpoint"));
    QVERIFY(window.findChild<QWidget*>(QStringLiteral("configFolderButton"))->isVisible());
    QCOMPARE(labelText(window, "promptTokenCounter"), QStringLiteral("no tokenizer"));
    QVERIFY(!labelText(window, "assumptionsValue").isEmpty());

    QSignalSpy loaded(&window, &MainWindow::modelLoaded);
    window.setConfigFolder(referenceModel("tiny-sd2/model"));
    QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, kLoadTimeoutMs);
    QCOMPARE(labelText(window, "configDirValue"), referenceModel("tiny-sd2/model"));
    QTest::keyClicks(window.findChild<QPlainTextEdit*>(QStringLiteral("promptEdit")), QStringLiteral("a photo of a cat"));
    QCOMPARE(labelText(window, "promptTokenCounter"), QStringLiteral("5 / 75"));
  }

  void closingWhileLoadingIsSafe() {
    // The window's destructor must wait for the worker rather than leave it writing to a dead window.
    auto window = std::make_unique<MainWindow>();
    window->openModel(referenceModel("tiny-sd2/model"));
    QVERIFY(window->isLoading());
    window.reset();
  }

  // With no model chosen yet the app starts on the built-in toy-world model, says so with an example in
  // its grammar that fills the prompt, suggests its kind of prompt at its own size, and does not
  // remember it; a real model takes the note and the examples away.
  void startsOnTheBuiltinModel() {
    QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).clear();
    MainWindow window;
    window.show();
    QSignalSpy loaded(&window, &MainWindow::modelLoaded);
    QVERIFY(window.restoreLastModel());
    QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, kLoadTimeoutMs);
    QCOMPARE(QFileInfo(window.model()->source).fileName(), QStringLiteral("toyworld"));
    QCOMPARE(labelText(window, "familyValue"), QStringLiteral("SD1.x"));
    QVERIFY(named<QWidget>(window, "builtinModelBanner")->isVisible());
    QVERIFY(QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).value(QStringLiteral("model/path")).toString().isEmpty());
    QCOMPARE(named<QSpinBox>(window, "widthSpin")->value(), 256);
    QCOMPARE(named<QSpinBox>(window, "heightSpin")->value(), 256);
    QCOMPARE(named<QComboBox>(window, "sizePreset")->currentText(), QStringLiteral("256×256 (native)"));
    QCOMPARE(named<QSpinBox>(window, "stepsSpin")->value(), 20);
    auto* prompt = named<QPlainTextEdit>(window, "promptEdit");
    QVERIFY2(prompt->placeholderText().contains(QLatin1String("at the top left, sand background")),
             qPrintable(prompt->placeholderText()));
    QVERIFY(window.promptEditor()->prompt().isEmpty());  // an example, not a prompt typed for the user

    const QString example =
        QStringLiteral("a red circle at the top left and a big blue house at the bottom right, sand background");
    auto* note = named<QLabel>(window, "builtinModelText");
    QVERIFY(note->text().contains(example));
    for (const char* menu : {"Open Model Folder...", "Open Checkpoint (.safetensors)..."})
      QVERIFY2(note->text().contains(QLatin1String(menu)), menu);
    emit note->linkActivated(QStringLiteral("example"));
    QCOMPARE(window.promptEditor()->prompt(), example);

    QVERIFY(openAndWait(window, referenceModel("tiny-sd2/model")));
    QVERIFY(!named<QWidget>(window, "builtinModelBanner")->isVisible());
    QVERIFY(prompt->placeholderText().contains(QLatin1String("a photo of a cat")));
    QCOMPARE(named<QComboBox>(window, "sizePreset")->findText(QStringLiteral("256×256 (native)")), -1);
    QCOMPARE(QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).value(QStringLiteral("model/path")).toString(),
             referenceModel("tiny-sd2/model"));
  }

  void attentionControlDrivesTheEditRequest() {
    MainWindow window;
    auto* panel = window.parameters();
    auto* check = panel->findChild<QCheckBox*>(QStringLiteral("attentionControlCheck"));
    QVERIFY(check);
    QVERIFY(!check->isChecked());  // the engine's default
    QVERIFY(!panel->editOptions().attention_control);
    QVERIFY(!check->toolTip().isEmpty());

    QSignalSpy changed(panel, &fisedit::ui::ParametersPanel::changed);
    check->click();
    QVERIFY(check->isChecked());
    QCOMPARE(changed.count(), 1);
    QVERIFY(panel->editOptions().attention_control);
    check->click();
    QVERIFY(!panel->editOptions().attention_control);

    // A painted region runs no detection steps: the option has nothing to act on, like Detection.
    check->click();
    panel->setPaintedMaskAvailable(true);
    auto* mode = panel->findChild<QComboBox*>(QStringLiteral("maskModeCombo"));
    mode->setCurrentIndex(mode->findData(int(fisedit::MaskMode::painted)));
    QCOMPARE(panel->maskMode(), fisedit::MaskMode::painted);
    QVERIFY(!check->isEnabled());
    QVERIFY(!panel->findChild<QWidget*>(QStringLiteral("detectStepsSpin"))->isEnabled());
    QVERIFY(!panel->editOptions().attention_control);
    // Both (intersect) detects, so the option applies again, as the user left it.
    mode->setCurrentIndex(mode->findData(int(fisedit::MaskMode::intersect)));
    QVERIFY(check->isEnabled());
    QVERIFY(check->isChecked());
    const fisedit::EditRequest e = panel->editOptions();
    QVERIFY(e.attention_control);
    QCOMPARE(e.mask_mode, fisedit::MaskMode::intersect);
    // Losing the painted mask returns to automatic, the option still on.
    panel->setPaintedMaskAvailable(false);
    QVERIFY(check->isEnabled());
    QVERIFY(panel->editOptions().attention_control);
  }

  // The panel's lasting choices come back in the next window (the next session); the seed does not.
  // Hand-edited settings out of range are clamped, an unknown sampler ignored.
  void remembersParameterChoices() {
    QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).clear();
    {
      MainWindow window;
      window.show();
      named<QSpinBox>(window, "stepsSpin")->setValue(33);
      named<QDoubleSpinBox>(window, "cfgSpin")->setValue(5.5);
      auto* sampler = named<QComboBox>(window, "schedulerCombo");
      sampler->setCurrentIndex(sampler->findData(QStringLiteral("euler")));
      named<QCheckBox>(window, "randomSeed")->setChecked(true);
      named<QSpinBox>(window, "marginSpin")->setValue(3);
      named<QSpinBox>(window, "detectStepsSpin")->setValue(4);
      named<QCheckBox>(window, "attentionControlCheck")->setChecked(true);
      named<QSpinBox>(window, "seedSpin")->setValue(1234);
      QVERIFY(window.close());
    }
    {
      MainWindow window;
      QCOMPARE(named<QSpinBox>(window, "stepsSpin")->value(), 33);
      QCOMPARE(named<QDoubleSpinBox>(window, "cfgSpin")->value(), 5.5);
      QCOMPARE(named<QComboBox>(window, "schedulerCombo")->currentData().toString(),
               QStringLiteral("euler"));
      QVERIFY(named<QCheckBox>(window, "randomSeed")->isChecked());
      QCOMPARE(named<QSpinBox>(window, "marginSpin")->value(), 3);
      QCOMPARE(named<QSpinBox>(window, "detectStepsSpin")->value(), 4);
      QVERIFY(window.parameters()->editOptions().attention_control);
      QCOMPARE(named<QSpinBox>(window, "seedSpin")->value(), 42);
      QCOMPARE(window.parameters()->request(1).steps, 33);
    }
    {
      QSettings settings(QStringLiteral("fisedit"), QStringLiteral("fisedit"));
      settings.setValue(QStringLiteral("parameters/steps"), 100000);
      settings.setValue(QStringLiteral("parameters/sampler"), QStringLiteral("no such sampler"));
    }
    MainWindow window;
    QCOMPARE(named<QSpinBox>(window, "stepsSpin")->maximum(),
             named<QSpinBox>(window, "stepsSpin")->value());
    QCOMPARE(named<QComboBox>(window, "schedulerCombo")->currentIndex(), 0);
    QSettings(QStringLiteral("fisedit"), QStringLiteral("fisedit")).clear();  // the next tests start from the defaults
  }

  // A PNG's parameters text fills the prompts and the panel, sizes rounded to multiples of 8; what
  // fisedit cannot take (a sampler it lacks) is said in the status bar. A PNG without the text, or a
  // file that is not a PNG, changes nothing and says why.
  void usesImageParameters() {
    QTemporaryDir dir;
    const fisedit::Image8 image{8, 8, 3, std::vector<std::uint8_t>(8 * 8 * 3, 128)};
    const QString a1111 = dir.filePath(QStringLiteral("a1111.png"));
    fisedit::write_png(a1111.toStdString(), image,
                       {{"parameters", "a castle\non a hill\nNegative prompt: lowres\nSteps: 28, Sampler: DPM++ SDE, "
                                       "CFG scale: 5, Seed: 123, Size: 516x772, Model hash: 6ce0, Model: v1-5"}});
    MainWindow window;
    window.show();
    auto* sampler = named<QComboBox>(window, "schedulerCombo");
    const QString samplerBefore = sampler->currentText();
    named<QCheckBox>(window, "randomSeed")->setChecked(true);
    QVERIFY(window.useImageParameters(a1111));
    QCOMPARE(window.promptEditor()->prompt(), QStringLiteral("a castle\non a hill"));
    QCOMPARE(window.promptEditor()->negativePrompt(), QStringLiteral("lowres"));
    const auto request = window.parameters()->request(window.parameters()->seed());
    QCOMPARE(request.steps, 28);
    QCOMPARE(request.cfg_scale, 5.0f);
    QCOMPARE(request.seed, std::uint64_t{123});
    QVERIFY(!window.parameters()->randomSeed());
    QCOMPARE(request.width, 512);
    QCOMPARE(request.height, 768);
    QCOMPARE(sampler->currentText(), samplerBefore);
    QVERIFY2(window.statusBar()->currentMessage().contains(QStringLiteral("DPM++ SDE")),
             qPrintable(window.statusBar()->currentMessage()));
    QVERIFY(!named<QWidget>(window, "errorBanner")->isVisible());

    const QString plain = dir.filePath(QStringLiteral("plain.png"));
    fisedit::write_png(plain.toStdString(), image);
    QVERIFY(!window.useImageParameters(plain));
    QVERIFY(named<QWidget>(window, "errorBanner")->isVisible());
    QVERIFY(named<QLabel>(window, "errorMessage")->text().contains(QStringLiteral("no generation parameters")));
    QFile notPng(dir.filePath(QStringLiteral("text.png")));
    QVERIFY(notPng.open(QIODevice::WriteOnly));
    notPng.write("not an image");
    notPng.close();
    QVERIFY(!window.useImageParameters(notPng.fileName()));
    QVERIFY(named<QLabel>(window, "errorMessage")->text().contains(QStringLiteral("Could not read")));
    QCOMPARE(window.parameters()->request(1).steps, 28);  // nothing changed
    QCOMPARE(window.promptEditor()->prompt(), QStringLiteral("a castle\non a hill"));

    // Dropping the PNG on the window does the same; a dragged text file is refused.
    window.promptEditor()->setPrompts(QStringLiteral("something else"), QString());
    QMimeData mime;
    mime.setUrls({QUrl::fromLocalFile(a1111)});
    const QPoint inside = window.rect().center();
    QDragEnterEvent enter(inside, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    enter.setAccepted(false);
    QApplication::sendEvent(&window, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(inside), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&window, &drop);
    QCOMPARE(window.promptEditor()->prompt(), QStringLiteral("a castle\non a hill"));
    QMimeData text;
    text.setUrls({QUrl::fromLocalFile(dir.filePath(QStringLiteral("notes.txt")))});
    QDragEnterEvent refused(inside, Qt::CopyAction, &text, Qt::LeftButton, Qt::NoModifier);
    refused.setAccepted(false);
    QApplication::sendEvent(&window, &refused);
    QVERIFY(!refused.isAccepted());
  }

  void restoresLastModel() {
    {
      QSettings settings(QStringLiteral("fisedit"), QStringLiteral("fisedit"));
      settings.setValue(QStringLiteral("model/path"), referenceModel("tiny-sd2/single-file.safetensors"));
      settings.setValue(QStringLiteral("model/configDir"), referenceModel("tiny-sd2/model"));
    }
    MainWindow window;
    QSignalSpy loaded(&window, &MainWindow::modelLoaded);
    QVERIFY(window.restoreLastModel());
    QTRY_COMPARE_WITH_TIMEOUT(loaded.count(), 1, kLoadTimeoutMs);
    QCOMPARE(labelText(window, "formatValue"), QStringLiteral("single-file checkpoint"));
    QCOMPARE(labelText(window, "configDirValue"), referenceModel("tiny-sd2/model"));
  }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
