#pragma once
// Driving the real main window in UI tests: load a model on the worker thread, then generate or edit
// as a user would (set the prompt, press Generate) and wait for the job.
#include "ui/main_window.h"

#include <QString>

namespace fisedit::test {

// Long enough for a CPU generation of the tiny models on a loaded CI machine.
constexpr int kJobTimeoutMs = 120000;

// The tiny SD2 reference model's folder.
QString tinyModel();

// The built-in toy-world model's folder (resources/models/toyworld, read in place), and prompts its
// vocabulary renders: a house whose colour an edit changes, and one with a second object.
QString toyModel();
inline const QString kHouse = QStringLiteral("a red house at the center, sand background");
inline const QString kGreenHouse = QStringLiteral("a green house at the center, sand background");
inline const QString kBlueHouse = QStringLiteral("a blue house at the center, sand background");
inline const QString kHouseAndTree =
    QStringLiteral("a red house at the center and a green tree at the top left, sand background");

// Opens `model` (tinyModel() when empty) and waits for the engine; then small fast settings: CPU, 4
// steps, 128x128. False when loading failed or timed out.
bool prepareWindow(ui::MainWindow& window, const QString& model = {});

// Sets the prompt and presses Generate; true when the job made a node.
bool submitPrompt(ui::MainWindow& window, const QString& prompt);

}  // namespace fisedit::test
