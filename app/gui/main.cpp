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
#include <QDialog>
#include <QMenu>
#include <QMenuBar>
#include <QPainter>
#include <QPixmap>
#include <QProgressBar>
#include <QTimer>
#include <QTreeWidget>

#include <cstdio>
#include <memory>

namespace {

using fisedit::ui::MainWindow;

// Hidden options for screenshots under Xvfb: generate, then edit (a leading "<" edits the first
// image instead of the latest, to show a branch), then paint dabs of the mask and type the next
// prompt without submitting it, save the project, open a File submenu, then save the window (or
// save it at a step preview three quarters into the last edit).
struct Demo {
  QString generate;
  QStringList edits;
  QStringList paints;  // "X,Y,R": a dab of radius R at image pixel (X, Y)
  QString nextPrompt;
  QString livePrompt;  // with Live on, typed once the jobs are done; the screenshot shows its live preview
  int steps = 0;
  QSize size;
  QString device;
  bool attentionControl = false;
  bool overlay = false;
  bool compare = false;  // View > Compare Before/After, the divider in the middle
  bool midEdit = false;  // the screenshot shows a step preview of the last edit, the job still running
  QString saveProject;   // saved there once the demo's jobs are done
  QString menu;          // a File submenu (its object name) shown open in the screenshot
  QString dialog;        // an action (its object name) whose dialog is shown open: userGuideAction, shortcutsAction
  QString screenshot;
};

void saveScreenshot(MainWindow& window, const QString& file, int delayMs = 400) {
  // A short delay lets the layout settle after the last change (a new image, a tab switch).
  QTimer::singleShot(delayMs, &window, [&window, file] {
    // Open menus and dialogs are windows of their own: drawn over the window's picture where they are.
    QPixmap shot = window.grab();
    QPainter painter(&shot);
    for (QWidget* top : QApplication::topLevelWidgets())
      if ((qobject_cast<QMenu*>(top) || qobject_cast<QDialog*>(top)) && top->isVisible())
        painter.drawPixmap(window.mapFromGlobal(top->pos()), top->grab());
    painter.end();
    if (!shot.save(file)) {
      std::fprintf(stderr, "fisedit: could not write the screenshot to %s\n", qPrintable(file));
      QCoreApplication::exit(1);
      return;
    }
    // exit(), not quit(): quit() closes the window first, and the demo's unsaved history would ask
    // whether to save it, with nobody there to answer.
    QCoreApplication::exit(0);
  });
}

// Opens File and its submenu `name` (Recent Projects, Recent Models) as a user pointing at it would.
void openDemoMenu(MainWindow& window, const QString& name) {
  auto* submenu = window.findChild<QMenu*>(name);
  QMenu* file = window.menuBar()->actions().value(0) ? window.menuBar()->actions().first()->menu() : nullptr;
  if (!submenu || !file) {
    std::fprintf(stderr, "fisedit: no menu %s\n", qPrintable(name));
    return;
  }
  const QRect fileItem = window.menuBar()->actionGeometry(file->menuAction());
  file->popup(window.menuBar()->mapToGlobal(fileItem.bottomLeft()));
  file->setActiveAction(submenu->menuAction());
  submenu->popup(file->mapToGlobal(file->actionGeometry(submenu->menuAction()).topRight()));
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
      if (remaining->isEmpty() && demo.midEdit && !demo.screenshot.isEmpty()) {
        // The first preview past three quarters of the edit's steps, taken at once while it is up:
        // the next step's replaces it.
        auto* bar = window.findChild<QProgressBar*>(QStringLiteral("jobProgress"));
        auto taken = std::make_shared<bool>(false);
        QObject::connect(window.canvas(), &fisedit::ui::ImageCanvas::previewShown, &window,
                         [&window, bar, taken, file = demo.screenshot] {
                           if (*taken || !bar || 4 * bar->value() < 3 * bar->maximum()) return;
                           *taken = true;
                           saveScreenshot(window, file, 0);
                         });
      }
      window.submit();
      return;
    }
    if (demo.overlay) {
      if (auto* overlay = window.findChild<QAction*>(QStringLiteral("overlayAction"))) overlay->setChecked(true);
    }
    if (demo.compare) {
      if (auto* compare = window.findChild<QAction*>(QStringLiteral("compareAction"))) compare->setChecked(true);
      window.canvas()->setCompareSplit(0.5);
    }
    if (ok && !demo.paints.isEmpty()) paintDemoMask(window, demo.paints);
    if (ok && !demo.nextPrompt.isEmpty())
      window.promptEditor()->setPrompts(demo.nextPrompt, window.promptEditor()->negativePrompt());
    if (!ok) std::fprintf(stderr, "fisedit: the demo's job did not finish\n");
    if (ok && !demo.saveProject.isEmpty()) window.saveProject(demo.saveProject);
    if (!demo.menu.isEmpty()) openDemoMenu(window, demo.menu);
    if (auto* action = window.findChild<QAction*>(demo.dialog); action && !demo.dialog.isEmpty()) action->trigger();
    if (ok && !demo.livePrompt.isEmpty()) {
      window.liveAction()->setChecked(true);
      QObject::connect(&window, &MainWindow::liveEditShown, &window, [&window, file = demo.screenshot] {
        if (!file.isEmpty()) saveScreenshot(window, file);
      });
      window.promptEditor()->setPrompts(demo.livePrompt, window.promptEditor()->negativePrompt());
      return;
    }
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
    else if (!demo.screenshot.isEmpty()) {
      if (!demo.menu.isEmpty()) openDemoMenu(window, demo.menu);
      if (auto* action = window.findChild<QAction*>(demo.dialog); action && !demo.dialog.isEmpty()) action->trigger();
      saveScreenshot(window, demo.screenshot);
    }
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
  const auto compare = hiddenOption(QStringLiteral("demo-compare"), QStringLiteral("Show the before/after split."));
  const auto dialog = hiddenOption(QStringLiteral("demo-dialog"),
                                   QStringLiteral("Show the dialog of the action NAME (userGuideAction, shortcutsAction) open."),
                                   QStringLiteral("NAME"));
  const auto saveProject = hiddenOption(QStringLiteral("demo-save-project"),
                                        QStringLiteral("Save the history as a project to FILE once the demo is done."),
                                        QStringLiteral("FILE"));
  const auto menu = hiddenOption(QStringLiteral("demo-menu"),
                                 QStringLiteral("Show the File submenu NAME (recentProjectsMenu, recentModelsMenu) open."),
                                 QStringLiteral("NAME"));
  const auto midEdit = hiddenOption(QStringLiteral("demo-mid-edit"),
                                    QStringLiteral("Take the screenshot at a step preview three quarters into the last edit."));
  const auto attention = hiddenOption(QStringLiteral("demo-attention-control"), QStringLiteral("Edit with attention control."));
  const auto paint = hiddenOption(QStringLiteral("demo-paint"),
                                  QStringLiteral("Then paint a mask dab of radius R at image pixel X,Y (repeatable)."),
                                  QStringLiteral("X,Y,R"));
  const auto next = hiddenOption(QStringLiteral("demo-next"), QStringLiteral("Then type PROMPT without submitting it."),
                                 QStringLiteral("PROMPT"));
  const auto live = hiddenOption(QStringLiteral("demo-live"),
                                 QStringLiteral("Then turn Live on and type PROMPT; the screenshot shows its live preview."),
                                 QStringLiteral("PROMPT"));
  const auto windowSize = hiddenOption(QStringLiteral("window-size"),
                                       QStringLiteral("Start the window at WxH (screenshots of small screens)."),
                                       QStringLiteral("WxH"));
  for (const auto& option : {screenshot, generate, edit, steps, size, device, attention, overlay, compare, midEdit,
                             saveProject, menu, dialog, paint, next, live, windowSize})
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
  demo.compare = parser.isSet(compare);
  demo.dialog = parser.value(dialog);
  demo.midEdit = parser.isSet(midEdit);
  demo.saveProject = parser.value(saveProject);
  demo.menu = parser.value(menu);
  demo.paints = parser.values(paint);
  demo.nextPrompt = parser.value(next);
  demo.livePrompt = parser.value(live);

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
