#pragma once
// What the UI shows about a loaded model, as display-ready values. The engine's LoadedModel stays with
// the worker thread that owns it (its weights will run there); the widgets only ever see this copy.
#include "text/clip_tokenizer.h"

#include <QMetaType>
#include <QString>
#include <QStringList>

#include <optional>

namespace fisedit {
struct LoadedModel;
}

namespace fisedit::ui {

struct ModelSummary {
  QString source;      // the path the user opened
  QString configDir;   // LoadOptions::config_dir, empty when none was given
  bool singleFile = false;

  QString family;      // "SD1.x" / "SD2.x"
  QString fingerprint; // model_fingerprint(): a project records it, to tell whether its edits can be replayed
  QString prediction;  // "epsilon" / "v_prediction"
  QString format;      // "diffusers folder" / "single-file checkpoint"
  QString scheduler;
  QString unetChannels;
  QString unetHeads;
  QString textEncoder;
  QString vaeChannels;
  QString parameters;
  QString weightDtype;
  QString defaultSize;
  int imageSize = 512;  // the default width and height, pixels
  QStringList assumptions;

  // Tokenizers are immutable and safe to share between threads, so the UI thread can count tokens
  // while the worker keeps its own copy. Empty when the model has none, with the reason in
  // tokenizerNote.
  std::optional<ClipTokenizer> tokenizer;
  QString tokenizerNote;
};

// Also loads the model's tokenizer, so it belongs on the worker thread. A tokenizer that fails to load
// does not fail the model (the weights are fine); the reason goes to tokenizerNote.
ModelSummary summarizeModel(const LoadedModel& model, const QString& configDir);

// Short enough for a form row: "865.9M", "1.07B"; exact below a million, where tiny test models live.
QString formatParameterCount(qint64 count);

}  // namespace fisedit::ui

Q_DECLARE_METATYPE(fisedit::ui::ModelSummary)
