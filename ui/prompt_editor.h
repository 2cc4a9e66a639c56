#pragma once
// Prompt and negative prompt, each with a live token counter like AUTOMATIC1111's: CLIP reads 75 tokens
// at a time (77 positions less BOS and EOS), so a longer prompt is encoded in chunks of 75
// (text/prompt_weights.h); the counter shows the tokens against the chunks they fill ("80 / 150") and
// where each chunk starts.
#include "text/clip_tokenizer.h"

#include <QWidget>

#include <optional>

class QLabel;
class QPlainTextEdit;

namespace fisedit::ui {

class PromptEditor : public QWidget {
  Q_OBJECT

public:
  static constexpr int kTokenLimit = ClipTokenizer::kMaxLength - 2;

  explicit PromptEditor(QWidget* parent = nullptr);

  // The loaded model's tokenizer. Without one the counters say why (noTokenizerReason); before any
  // model is loaded, call with an empty reason.
  void setTokenizer(std::optional<ClipTokenizer> tokenizer, const QString& noTokenizerReason);

  // What the empty fields suggest: Stable Diffusion examples by default; a model with a vocabulary of
  // its own (the built-in toy-world model) suggests its own. An empty string restores the default.
  void setPlaceholders(const QString& prompt, const QString& negativePrompt);

  QString prompt() const;
  QString negativePrompt() const;
  // Leaves a field alone when its text is already `text`, so the cursor does not jump.
  void setPrompts(const QString& prompt, const QString& negativePrompt);

signals:
  void promptsChanged();

private:
  struct Field {
    QPlainTextEdit* edit = nullptr;
    QLabel* counter = nullptr;
  };

  Field addField(const QString& title, const QString& name);
  void updateCounter(const Field& field);

  Field m_prompt;
  Field m_negative;
  std::optional<ClipTokenizer> m_tokenizer;
  QString m_noTokenizerReason;
};

}  // namespace fisedit::ui
