// The desktop application: everything lives in fisedit_ui; this only reads the command line.
#include "ui/main_window.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QPixmap>
#include <QTimer>

#include <cstdio>

namespace {

// Saves what the window shows once the startup load has finished (or failed), then quits: for docs
// and for reviewing the real window under Xvfb, where no screenshot tool may be installed.
void screenshotWhenSettled(fisedit::ui::MainWindow& window, const QString& file) {
  const auto shoot = [&window, file] {
    // A short delay lets the layout settle after the model panel replaces the welcome banner.
    QTimer::singleShot(300, &window, [&window, file] {
      if (!window.grab().save(file)) {
        std::fprintf(stderr, "fisedit: could not write the screenshot to %s\n", qPrintable(file));
        QCoreApplication::exit(1);
        return;
      }
      QCoreApplication::quit();
    });
  };
  if (!window.isLoading()) {
    shoot();
    return;
  }
  QObject::connect(&window, &fisedit::ui::MainWindow::modelLoaded, &window, shoot);
  QObject::connect(&window, &fisedit::ui::MainWindow::loadFailed, &window, shoot);
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
  QCommandLineOption screenshot(QStringLiteral("screenshot"),
                                QStringLiteral("Save the window to FILE once the model has loaded, then quit."),
                                QStringLiteral("FILE"));
  screenshot.setFlags(QCommandLineOption::HiddenFromHelp);
  parser.addOption(screenshot);
  parser.process(app);

  fisedit::ui::MainWindow window;
  const QStringList args = parser.positionalArguments();
  if (!args.isEmpty())
    window.openModel(args.first());
  else
    window.restoreLastModel();
  window.show();

  if (parser.isSet(screenshot)) screenshotWhenSettled(window, parser.value(screenshot));
  return QApplication::exec();
}
