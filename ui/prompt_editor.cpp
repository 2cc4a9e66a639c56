// The prompt fields with their token counters (prompt_editor.h).
#include "ui/prompt_editor.h"

#include "core/error.h"
#include "text/prompt_weights.h"

#include <QHBoxLayout>
#include <QStringList>
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

  WeightedTokens content;
  try {
    const QByteArray utf8 = field.edit->toPlainText().toUtf8();
    // The tokens the text encoder reads: the emphasis syntax ("(word:1.2)") and BREAK are not text.
    content = prompt_tokens(*m_tokenizer, std::string_view(utf8.constData(), utf8.size()));
  } catch (const Error& e) {
    counter->setText(QStringLiteral("? / %1").arg(kTokenLimit));
    counter->setToolTip(tr("The prompt could not be tokenized: %1").arg(QString::fromUtf8(e.what())));
    return;
  }

  // As AUTOMATIC1111 counts: the tokens against the chunks they fill, 75 a chunk ("80 / 150").
  const auto chunks = chunk_tokens(content);
  const int count = static_cast<int>(content.ids.size());
  const int chunkCount = static_cast<int>(chunks.size());
  counter->setText(QStringLiteral("%1 / %2").arg(count).arg(chunkCount * kTokenLimit));
  if (chunkCount > kMaxPromptChunks) {
    counter->setStyleSheet(kOverLimitStyle);
    counter->setToolTip(tr("Too long: %1 chunks of up to %2 tokens; at most %3 chunks (%4 tokens) are read, and a "
                           "longer prompt is refused. Shorten it.")
                            .arg(chunkCount)
                            .arg(kTokenLimit)
                            .arg(kMaxPromptChunks)
                            .arg(kMaxPromptChunks * kTokenLimit));
    return;
  }
  if (chunkCount == 1) {
    counter->setToolTip(tr("%1 of the %2 tokens the text encoder reads at once; a longer prompt goes on in "
                           "another chunk of %2 (BREAK starts one early).")
                            .arg(count)
                            .arg(kTokenLimit));
    return;
  }
  // Where each chunk starts, by its first word: the text encoder reads each chunk on its own, so a
  // phrase cut by a boundary loses its meaning (move the words, or put BREAK before the phrase).
  QStringList starts;
  for (int i = 1; i < chunkCount; ++i) {
    QString word = tr("(empty)");
    if (!chunks[static_cast<std::size_t>(i)].ids.empty()) {
      word = QString::fromStdString(m_tokenizer->token_text(chunks[static_cast<std::size_t>(i)].ids.front()));
      word.remove(QStringLiteral("</w>"));
    }
    starts << tr("chunk %1 starts at “%2”").arg(i + 1).arg(word);
  }
  counter->setToolTip(tr("%1 tokens in %2 chunks of up to %3, each read by the text encoder on its own: %4.")
                          .arg(count)
                          .arg(chunkCount)
                          .arg(kTokenLimit)
                          .arg(starts.join(QStringLiteral(", "))));
}

}  // namespace fisedit::ui
