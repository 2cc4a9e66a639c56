// The desktop application: everything lives in fisedit_ui; this only reads the command line (and,
// for docs and review, drives a short hidden demo before taking a screenshot).
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/painted_mask.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include <QAction>
#include <QApplication>
#include <QCommandLineParser>
#include <QPixmap>
#include <QTimer>
#include <QTreeWidget>

#include <cstdio>

namespace {

using fisedit::ui::MainWindow;

// Hidden options for screenshots under Xvfb: generate, then edit (a leading "<" edits the first
// image instead of the latest, to show a branch), then paint dabs of the mask and type the next
// prompt without submitting it, then save the window.
struct Demo {
  QString generate;
  QStringList edits;
  QStringList paints;  // "X,Y,R": a dab of radius R at image pixel (X, Y)
  QString nextPrompt;
  int steps = 0;
  QSize size;
  QString device;
  bool attentionControl = false;
  bool overlay = false;
  QString screenshot;
};

void saveScreenshot(MainWindow& window, const QString& file) {
  // A short delay lets the layout settle after the last change (a new image, a tab switch).
  QTimer::singleShot(400, &window, [&window, file] {
    if (!window.grab().save(file)) {
      std::fprintf(stderr, "fisedit: could not write the screenshot to %s\n", qPrintable(file));
      QCoreApplication::exit(1);
      return;
    }
    // exit(), not quit(): quit() closes the window first, and the demo's unsaved history would ask
    // whether to save it, with nobody there to answer.
    QCoreApplication::exit(0);
  });
}

// Paints as a brush stroke of the user's would, so the edit options follow as they do then.
void paintDemoMask(MainWindow& window, const QStringList& dabs) {
  auto* canvas = window.canvas();
  canvas->setTool(fisedit::ui::ImageCanvas::Tool::brush);
  for (const QString& dab : dabs) {
    const QStringList xyr = dab.split(QLatin1Char(','));
    if (xyr.size() != 3) {
      std::fprintf(stderr, "fisedit: --demo-paint takes X,Y,R, not %s\n", qPrintable(dab));
      continue;
    }
    canvas->setBrushSize(2 * xyr[2].toInt());
    const QPointF at(xyr[0].toDouble() + 0.5, xyr[1].toDouble() + 0.5);
    canvas->mask()->beginStroke(at, fisedit::ui::PaintedMask::Tool::brush, canvas->brushSize());
    canvas->mask()->endStroke();
  }
}

void runDemo(MainWindow& window, const Demo& demo) {
  auto* params = window.parameters();
  if (demo.device == QLatin1String("cpu")) params->setDevice(fisedit::DeviceChoice::cpu);
  if (demo.steps > 0) params->setSteps(demo.steps);
  if (demo.size.isValid()) params->setSize(demo.size.width(), demo.size.height());
  if (demo.attentionControl) params->setAttentionControl(true);
  window.promptEditor()->setPrompts(demo.generate, QString());
  auto remaining = std::make_shared<QStringList>(demo.edits);
  QObject::connect(&window, &MainWindow::jobFinished, &window, [&window, demo, remaining](bool ok) {
    if (ok && !remaining->isEmpty()) {
      QString prompt = remaining->takeFirst();
      if (prompt.startsWith(QLatin1Char('<'))) {
        prompt.remove(0, 1);
        auto* tree = window.history()->tree();
        tree->setCurrentItem(tree->topLevelItem(0));
      }
      window.promptEditor()->setPrompts(prompt, window.promptEditor()->negativePrompt());
      window.submit();
      return;
    }
    if (demo.overlay) {
      if (auto* overlay = window.findChild<QAction*>(QStringLiteral("overlayAction"))) overlay->setChecked(true);
    }
    if (ok && !demo.paints.isEmpty()) paintDemoMask(window, demo.paints);
    if (ok && !demo.nextPrompt.isEmpty())
      window.promptEditor()->setPrompts(demo.nextPrompt, window.promptEditor()->negativePrompt());
    if (!ok) std::fprintf(stderr, "fisedit: the demo's job did not finish\n");
    if (!demo.screenshot.isEmpty()) saveScreenshot(window, demo.screenshot);
  });
  window.submit();
}

// Saves what the window shows once the startup load has finished (or failed), then quits, or first
// runs the demo when one was asked for.
void whenSettled(MainWindow& window, const Demo& demo) {
  const auto settled = [&window, demo](bool loaded) {
    if (loaded && !demo.generate.isEmpty())
      runDemo(window, demo);
    else if (!demo.screenshot.isEmpty())
      saveScreenshot(window, demo.screenshot);
  };
  if (!window.isLoading()) {
    settled(false);
    return;
  }
  QObject::connect(&window, &MainWindow::modelLoaded, &window, [settled] { settled(true); });
  QObject::connect(&window, &MainWindow::loadFailed, &window, [settled] { settled(false); });
}

QCommandLineOption hiddenOption(const QString& name, const QString& description, const QString& value = {}) {
  QCommandLineOption option(name, description, value);
  option.setFlags(QCommandLineOption::HiddenFromHelp);
  return option;
}

}  // namespace

int main(int argc, char* argv[]) {
  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("fisedit"));
  QApplication::setOrganizationName(QStringLiteral("fisedit"));
  QApplication::setApplicationVersion(QStringLiteral(FISEDIT_VERSION));

  QCommandLineParser parser;
  parser.setApplicationDescription(QStringLiteral("Interactive text-to-image editing with Stable Diffusion"));
  parser.addHelpOption();
  parser.addVersionOption();
  parser.addPositionalArgument(QStringLiteral("model"),
                               QStringLiteral("A diffusers folder or a .safetensors checkpoint to open "
                                              "(default: the model opened last)."),
                               QStringLiteral("[model]"));
  const auto screenshot = hiddenOption(QStringLiteral("screenshot"),
                                       QStringLiteral("Save the window to FILE once settled, then quit."),
                                       QStringLiteral("FILE"));
  const auto generate = hiddenOption(QStringLiteral("demo-generate"), QStringLiteral("Generate PROMPT first."),
                                     QStringLiteral("PROMPT"));
  const auto edit = hiddenOption(QStringLiteral("demo-edit"), QStringLiteral("Then edit to PROMPT (repeatable)."),
                                 QStringLiteral("PROMPT"));
  const auto steps = hiddenOption(QStringLiteral("demo-steps"), QStringLiteral("Steps."), QStringLiteral("N"));
  const auto size = hiddenOption(QStringLiteral("demo-size"), QStringLiteral("Size."), QStringLiteral("WxH"));
  const auto device = hiddenOption(QStringLiteral("demo-device"), QStringLiteral("cpu or auto."), QStringLiteral("D"));
  const auto overlay = hiddenOption(QStringLiteral("demo-overlay"), QStringLiteral("Show the changed region."));
  const auto attention = hiddenOption(QStringLiteral("demo-attention-control"), QStringLiteral("Edit with attention control."));
  const auto paint = hiddenOption(QStringLiteral("demo-paint"),
                                  QStringLiteral("Then paint a mask dab of radius R at image pixel X,Y (repeatable)."),
                                  QStringLiteral("X,Y,R"));
  const auto next = hiddenOption(QStringLiteral("demo-next"), QStringLiteral("Then type PROMPT without submitting it."),
                                 QStringLiteral("PROMPT"));
  const auto windowSize = hiddenOption(QStringLiteral("window-size"),
                                       QStringLiteral("Start the window at WxH (screenshots of small screens)."),
                                       QStringLiteral("WxH"));
  for (const auto& option : {screenshot, generate, edit, steps, size, device, attention, overlay, paint, next, windowSize})
    parser.addOption(option);
  parser.process(app);

  Demo demo;
  demo.screenshot = parser.value(screenshot);
  demo.generate = parser.value(generate);
  demo.edits = parser.values(edit);
  demo.steps = parser.value(steps).toInt();
  const QStringList wh = parser.value(size).split(QLatin1Char('x'));
  if (wh.size() == 2) demo.size = QSize(wh[0].toInt(), wh[1].toInt());
  demo.device = parser.value(device);
  demo.attentionControl = parser.isSet(attention);
  demo.overlay = parser.isSet(overlay);
  demo.paints = parser.values(paint);
  demo.nextPrompt = parser.value(next);

  MainWindow window;
  const QStringList windowWh = parser.value(windowSize).split(QLatin1Char('x'));
  if (windowWh.size() == 2) window.resize(windowWh[0].toInt(), windowWh[1].toInt());
  const QStringList args = parser.positionalArguments();
  if (!args.isEmpty())
    window.openModel(args.first());
  else
    window.restoreLastModel();
  window.show();

  if (!demo.screenshot.isEmpty() || !demo.generate.isEmpty()) whenSettled(window, demo);
  return QApplication::exec();
}
