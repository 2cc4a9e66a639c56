// The prompt fields with their token counters (prompt_editor.h).
#include "ui/prompt_editor.h"

#include "core/error.h"
#include "text/prompt_weights.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QVBoxLayout>

namespace fisedit::ui {
namespace {

const QString kOverLimitStyle = QStringLiteral("color: #c62828; font-weight: bold;");

}  // namespace

PromptEditor::PromptEditor(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  m_prompt = addField(tr("Prompt"), QStringLiteral("prompt"));
  m_negative = addField(tr("Negative prompt"), QStringLiteral("negativePrompt"));
  setPlaceholders(QString(), QString());

  setTokenizer(std::nullopt, QString());
}

PromptEditor::Field PromptEditor::addField(const QString& title, const QString& name) {
  Field field;
  auto* header = new QHBoxLayout;
  auto* titleLabel = new QLabel(QStringLiteral("<b>%1</b>").arg(title.toHtmlEscaped()), this);
  field.counter = new QLabel(this);
  field.counter->setObjectName(name + QStringLiteral("TokenCounter"));
  field.counter->setAlignment(Qt::AlignRight | Qt::AlignVCenter);
  header->addWidget(titleLabel);
  header->addStretch(1);
  header->addWidget(field.counter);

  field.edit = new QPlainTextEdit(this);
  field.edit->setObjectName(name + QStringLiteral("Edit"));
  field.edit->setTabChangesFocus(true);
  titleLabel->setBuddy(field.edit);

  auto* box = qobject_cast<QVBoxLayout*>(layout());
  box->addLayout(header);
  box->addWidget(field.edit, 1);

  // Captures by value: the Field is copied into the member right after, but its pointers stay the same.
  connect(field.edit, &QPlainTextEdit::textChanged, this, [this, field] {
    updateCounter(field);
    emit promptsChanged();
  });
  return field;
}

void PromptEditor::setTokenizer(std::optional<ClipTokenizer> tokenizer, const QString& noTokenizerReason) {
  m_tokenizer = std::move(tokenizer);
  m_noTokenizerReason = noTokenizerReason;
  updateCounter(m_prompt);
  updateCounter(m_negative);
}

void PromptEditor::setPlaceholders(const QString& prompt, const QString& negativePrompt) {
  m_prompt.edit->setPlaceholderText(
      prompt.isEmpty() ? tr("What the image should show, e.g. a photo of a cat on a windowsill") : prompt);
  m_negative.edit->setPlaceholderText(
      negativePrompt.isEmpty() ? tr("What to steer away from, e.g. blurry, low quality") : negativePrompt);
}

QString PromptEditor::prompt() const { return m_prompt.edit->toPlainText(); }

QString PromptEditor::negativePrompt() const { return m_negative.edit->toPlainText(); }

void PromptEditor::setPrompts(const QString& prompt, const QString& negativePrompt) {
  if (m_prompt.edit->toPlainText() != prompt) m_prompt.edit->setPlainText(prompt);
  if (m_negative.edit->toPlainText() != negativePrompt) m_negative.edit->setPlainText(negativePrompt);
}

void PromptEditor::updateCounter(const Field& field) {
  auto* counter = field.counter;
  counter->setStyleSheet(QString());

  if (!m_tokenizer) {
    if (m_noTokenizerReason.isEmpty()) {
      counter->setText(QStringLiteral("– / %1").arg(kTokenLimit));
      counter->setToolTip(tr("Open a model to count tokens with its tokenizer."));
    } else {
      counter->setText(tr("no tokenizer"));
      counter->setToolTip(m_noTokenizerReason);
    }
    return;
  }

  int count = 0;
  try {
    const QByteArray utf8 = field.edit->toPlainText().toUtf8();
    // The tokens the text encoder reads: the emphasis syntax ("(word:1.2)") is not text.
    count = static_cast<int>(prompt_tokens(*m_tokenizer, std::string_view(utf8.constData(), utf8.size())).ids.size());
  } catch (const Error& e) {
    counter->setText(QStringLiteral("? / %1").arg(kTokenLimit));
    counter->setToolTip(tr("The prompt could not be tokenized: %1").arg(QString::fromUtf8(e.what())));
    return;
  }

  counter->setText(QStringLiteral("%1 / %2").arg(count).arg(kTokenLimit));
  if (count > kTokenLimit) {
    counter->setStyleSheet(kOverLimitStyle);
    counter->setToolTip(tr("The text encoder reads only the first %1 tokens; the last %2 are truncated "
                           "and have no effect on the image.")
                            .arg(kTokenLimit)
                            .arg(count - kTokenLimit));
  } else {
    counter->setToolTip(tr("%1 of the %2 tokens the text encoder reads.").arg(count).arg(kTokenLimit));
  }
}

}  // namespace fisedit::ui
