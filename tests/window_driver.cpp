// Driving the main window in UI tests (window_driver.h): load the tiny model, generate or edit, wait.
#include "window_driver.h"

#include "test_support.h"
#include "ui/parameters_panel.h"
#include "ui/prompt_editor.h"

#include <QSignalSpy>
#include <QTest>

namespace fisedit::test {

QString tinyModel() { return QString::fromStdString((reference_dir() / "tiny-sd2/model").string()); }

QString toyModel() { return QStringLiteral(FISEDIT_TOYWORLD_MODEL_DIR); }

bool prepareWindow(ui::MainWindow& window, const QString& model) {
  QSignalSpy loaded(&window, &ui::MainWindow::modelLoaded);
  QSignalSpy ready(&window, &ui::MainWindow::engineReady);
  window.openModel(model.isEmpty() ? tinyModel() : model);
  if (!QTest::qWaitFor([&] { return loaded.count() == 1 && ready.count() >= 1; }, kJobTimeoutMs)) return false;
  window.parameters()->setDevice(DeviceChoice::cpu);
  window.parameters()->setSteps(4);
  window.parameters()->setSize(128, 128);
  return true;
}

bool submitPrompt(ui::MainWindow& window, const QString& prompt) {
  window.promptEditor()->setPrompts(prompt, QString());
  QSignalSpy finished(&window, &ui::MainWindow::jobFinished);
  window.submit();
  if (!QTest::qWaitFor([&] { return finished.count() == 1; }, kJobTimeoutMs)) return false;
  return finished.first().first().toBool();
}

}  // namespace fisedit::test
