// The window's fixed furniture: the welcome and error banners, the file choosers and the About box.
#include "ui/main_window.h"

#include "ui/prompt_editor.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QToolButton>
#include <QVBoxLayout>

namespace fisedit::ui {

QWidget* MainWindow::createWelcomeBanner() {
  auto* banner = new QFrame;
  banner->setObjectName(QStringLiteral("welcomeBanner"));
  banner->setFrameShape(QFrame::StyledPanel);
  auto* layout = new QVBoxLayout(banner);

  auto* text = new QLabel(tr(
      "<h3>No model loaded</h3>"
      "<p>fisedit works with Stable Diffusion 1.5 and 2.x weights, in either of the forms they are shared in:</p>"
      "<p><b>A diffusers folder</b> (File &gt; Open Model Folder...): the folder holding "
      "<tt>model_index.json</tt> and the <tt>unet</tt>, <tt>vae</tt>, <tt>text_encoder</tt>, <tt>tokenizer</tt> "
      "and <tt>scheduler</tt> subfolders, as downloaded from the Hugging Face Hub "
      "(e.g. stable-diffusion-v1-5 or stable-diffusion-2-1-base).</p>"
      "<p><b>A single-file checkpoint</b> (File &gt; Open Checkpoint...): one <tt>.safetensors</tt> file as "
      "AUTOMATIC1111 and ComfyUI keep them (e.g. v1-5-pruned-emaonly.safetensors). Its family is recognised "
      "from the weights; give it a <i>config folder</i> (a diffusers folder of the same family) to read the "
      "exact settings and count prompt tokens.</p>"
      "<p>Pickled <tt>.ckpt</tt> files are not read: convert them to .safetensors first.</p>"));
  text->setObjectName(QStringLiteral("welcomeText"));
  text->setWordWrap(true);
  text->setTextFormat(Qt::RichText);
  layout->addWidget(text);

  auto* buttons = new QHBoxLayout;
  auto* folderButton = new QPushButton(tr("Open Model Folder..."));
  auto* checkpointButton = new QPushButton(tr("Open Checkpoint..."));
  connect(folderButton, &QPushButton::clicked, this, &MainWindow::chooseModelFolder);
  connect(checkpointButton, &QPushButton::clicked, this, &MainWindow::chooseCheckpoint);
  buttons->addWidget(folderButton);
  buttons->addWidget(checkpointButton);
  buttons->addStretch(1);
  layout->addLayout(buttons);
  layout->addStretch(1);
  return banner;
}

QWidget* MainWindow::createErrorBanner() {
  // Inline rather than a modal box: the message stays readable next to the model it concerns, and a
  // failed load at startup does not block the window behind a dialog.
  auto* banner = new QFrame;
  banner->setObjectName(QStringLiteral("errorBanner"));
  banner->setStyleSheet(QStringLiteral("#errorBanner { background: #fdecea; border: 1px solid #e57373; border-radius: 4px; }"
                                       "#errorBanner QLabel { color: #5f2120; }"));
  auto* layout = new QHBoxLayout(banner);
  m_errorMessage = new QLabel;
  m_errorMessage->setObjectName(QStringLiteral("errorMessage"));
  m_errorMessage->setWordWrap(true);
  m_errorMessage->setTextFormat(Qt::RichText);
  m_errorMessage->setTextInteractionFlags(Qt::TextSelectableByMouse);
  auto* close = new QToolButton;
  close->setText(QStringLiteral("✕"));
  close->setToolTip(tr("Dismiss"));
  close->setAutoRaise(true);
  connect(close, &QToolButton::clicked, banner, &QWidget::hide);
  layout->addWidget(m_errorMessage, 1);
  layout->addWidget(close, 0, Qt::AlignTop);
  banner->hide();
  return banner;
}

namespace {

// The built-in model's examples, in its prompt grammar (engine/toyworld/world.h): it draws nothing
// else well, so the examples a user copies must be sentences it was trained on.
const QString kBuiltinExample =
    QStringLiteral("a red circle at the top left and a big blue house at the bottom right, sand background");
const QString kBuiltinPlaceholderExample = QStringLiteral("a red circle at the top left, sand background");

}  // namespace

QWidget* MainWindow::createBuiltinModelBanner() {
  auto* banner = new QFrame;
  banner->setObjectName(QStringLiteral("builtinModelBanner"));
  banner->setStyleSheet(QStringLiteral("#builtinModelBanner { background: #e8f1fb; border: 1px solid #90b4de; border-radius: 4px; }"
                                       "#builtinModelBanner QLabel { color: #1d3b5f; }"));
  auto* layout = new QHBoxLayout(banner);
  layout->setContentsMargins(8, 4, 4, 4);
  // Four lines at 1280 px: what the model is with an example, its words, then real weights. Any taller
  // and the left column, which just fits a 1280x800 window, would scroll its Generate button away.
  auto* text = new QLabel(
      tr("<b>Built-in toy-world model:</b> 256×256 pictures of one to three objects on a background. "
         "Try <a href=\"example\">%1</a> (click to use it).<br>"
         "<b>Words:</b> circle, square, triangle, star, heart, house, tree, boat · red, orange, yellow, green, "
         "blue, purple, pink, white, black, brown · small, big · at the top left, top, top right, left, center, "
         "right, bottom left, bottom, bottom right · grass, sand, sea, sky, snow, night background.<br>"
         "For Stable Diffusion 1.x or 2.x weights: File &gt; Open Model Folder... or "
         "Open Checkpoint (.safetensors)...")
          .arg(kBuiltinExample.toHtmlEscaped()));
  text->setObjectName(QStringLiteral("builtinModelText"));
  text->setWordWrap(true);
  text->setTextFormat(Qt::RichText);
  connect(text, &QLabel::linkActivated, this, [this] {
    m_promptEditor->setPrompts(kBuiltinExample, m_promptEditor->negativePrompt());
    m_promptEditor->setFocus();
  });
  auto* close = new QToolButton;
  close->setObjectName(QStringLiteral("builtinModelClose"));
  close->setText(QStringLiteral("✕"));
  close->setToolTip(tr("Dismiss"));
  close->setAutoRaise(true);
  connect(close, &QToolButton::clicked, banner, &QWidget::hide);
  layout->addWidget(text, 1);
  layout->addWidget(close, 0, Qt::AlignTop);
  banner->hide();
  return banner;
}

void MainWindow::showModelGuidance(bool builtin) {
  m_builtinBanner->setVisible(builtin);
  if (builtin)
    m_promptEditor->setPlaceholders(tr("What the image should show, e.g. %1").arg(kBuiltinPlaceholderExample),
                                    tr("What to steer away from (usually nothing with this model)"));
  else
    m_promptEditor->setPlaceholders(QString(), QString());
}

QString MainWindow::builtinModelPath() {
  const QStringList candidates = {
      QCoreApplication::applicationDirPath() + QStringLiteral("/../share/fisedit/models/toyworld"),  // installed
#ifdef FISEDIT_BUILTIN_MODEL_DIR
      QStringLiteral(FISEDIT_BUILTIN_MODEL_DIR),  // the source tree, for runs from the build tree
#endif
  };
  for (const auto& dir : candidates)
    if (QFileInfo::exists(dir + QStringLiteral("/model_index.json"))) return QDir(dir).canonicalPath();
  return {};
}

void MainWindow::chooseModelFolder() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Open Model Folder"), browseDir(BrowseKind::models));
  if (!dir.isEmpty()) openModel(dir);
}

void MainWindow::chooseCheckpoint() {
  const QString file = QFileDialog::getOpenFileName(this, tr("Open Checkpoint"), browseDir(BrowseKind::models),
                                                    tr("Safetensors checkpoints (*.safetensors)"));
  if (!file.isEmpty()) openModel(file);
}

void MainWindow::chooseConfigFolder() {
  const QString dir = QFileDialog::getExistingDirectory(this, tr("Config Folder (a diffusers folder of the same family)"),
                                                        browseDir(BrowseKind::models));
  if (!dir.isEmpty()) setConfigFolder(dir);
}

void MainWindow::showAbout() {
  QMessageBox::about(
      this, tr("About fisedit"),
      tr("<h3>fisedit %1</h3>"
         "<p>Interactive text-to-image editing with Stable Diffusion 1.5 and 2.x.</p>"
         "<p>Generate an image, then change the prompt: the edit re-renders only the region the change "
         "affects, and everything outside it stays the same pixels.</p>")
          .arg(QStringLiteral(FISEDIT_VERSION)));
}

}  // namespace fisedit::ui
