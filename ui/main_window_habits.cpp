// What users bring from other image tools (issue 14): the clipboard (Copy Image with its parameters,
// Copy and Paste Parameters), the before/after compare action's state, and the Help menu (the user
// guide in a dialog, the keyboard shortcuts read from the actions themselves).
#include "ui/history_panel.h"
#include "ui/image_canvas.h"
#include "ui/main_window.h"
#include "ui/parameters_panel.h"
#include "ui/project_file.h"
#include "ui/prompt_editor.h"

#include "core/error.h"
#include "io/a1111_parameters.h"
#include "io/image_file.h"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QCoreApplication>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileInfo>
#include <QHeaderView>
#include <QMenu>
#include <QMenuBar>
#include <QMimeData>
#include <QSet>
#include <QStatusBar>
#include <QTextBrowser>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <functional>
#include <utility>

namespace fisedit::ui {
namespace {

// The widest a guide image is shown: the screenshots are taken at 1280 px and would make the reader
// scroll sideways for every one.
constexpr int kGuideImageWidth = 760;

// Resolves the guide's images relative to its folder (QTextBrowser does, given the file's URL) and
// shrinks the wide ones to the dialog.
class GuideBrowser : public QTextBrowser {
public:
  using QTextBrowser::QTextBrowser;

  QVariant loadResource(int type, const QUrl& name) override {
    QVariant resource = QTextBrowser::loadResource(type, name);
    if (type != QTextDocument::ImageResource) return resource;
    QImage image = resource.value<QImage>();
    if (image.isNull()) image.loadFromData(resource.toByteArray());
    if (image.isNull() || image.width() <= kGuideImageWidth) return resource;
    return image.scaledToWidth(kGuideImageWidth, Qt::SmoothTransformation);
  }
};

// "&Copy Image" as the menu shows it; "&&" is a literal ampersand.
QString withoutMnemonic(const QString& text) {
  QString plain;
  for (qsizetype i = 0; i < text.size(); ++i) {
    if (text[i] == QLatin1Char('&') && i + 1 < text.size()) ++i;
    plain += text[i];
  }
  return plain;
}

QString shortcutText(const QAction* action) {
  QStringList keys;
  for (const QKeySequence& key : action->shortcuts()) keys << key.toString(QKeySequence::NativeText);
  return keys.join(QStringLiteral(", "));
}

// The A1111 parameters text of a history node, as export writes it into the PNG.
QString parametersText(const HistoryRecord& record) {
  for (const auto& [key, value] : imageTextChunks(record))
    if (key == "parameters") return QString::fromStdString(value);
  return {};
}

}  // namespace

void MainWindow::createClipboardActions(QMenu* edit) {
  m_copyImageAction = edit->addAction(tr("&Copy Image"), this, &MainWindow::copyImage);
  m_copyImageAction->setObjectName(QStringLiteral("copyImageAction"));
  m_copyImageAction->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C));
  m_copyImageAction->setToolTip(tr("The image and its parameters to the clipboard (Ctrl+C on the image)"));
  // Plain Ctrl+C copies the image only while the canvas has focus: in the prompt boxes it copies text.
  m_canvasCopyAction = new QAction(tr("Copy Image (on the image)"), m_canvas);
  m_canvasCopyAction->setObjectName(QStringLiteral("canvasCopyAction"));
  m_canvasCopyAction->setShortcut(QKeySequence::Copy);
  m_canvasCopyAction->setShortcutContext(Qt::WidgetShortcut);
  connect(m_canvasCopyAction, &QAction::triggered, this, &MainWindow::copyImage);
  m_canvas->addAction(m_canvasCopyAction);
  m_copyParametersAction = edit->addAction(tr("Copy &Parameters"), this, &MainWindow::copyParameters);
  m_copyParametersAction->setObjectName(QStringLiteral("copyParametersAction"));
  m_copyParametersAction->setShortcut(QKeySequence(Qt::CTRL | Qt::ALT | Qt::Key_C));
  auto* paste = edit->addAction(tr("Paste Parame&ters"), this, &MainWindow::pasteParameters);
  paste->setObjectName(QStringLiteral("pasteParametersAction"));
  paste->setShortcut(QKeySequence(Qt::CTRL | Qt::ALT | Qt::Key_V));
  paste->setToolTip(tr("Fill the prompts and parameters from AUTOMATIC1111-style text on the clipboard"));
  for (QAction* copy : {m_copyImageAction, m_canvasCopyAction, m_copyParametersAction}) copy->setEnabled(false);
}

bool MainWindow::copyImage() {
  const auto id = m_history->currentNode();
  if (!id) return false;
  const HistoryRecord* r = m_history->record(*id);
  auto* mime = new QMimeData;
  mime->setImageData(r->image);
  // The exported file's bytes: a paste into a tool that reads PNG (a browser, ComfyUI, A1111's PNG
  // Info) gets the parameters too. Explicit data wins over Qt's own conversion of the image.
  bool withParameters = true;
  try {
    const std::string png = encode_png(toImage8(r->image), imageTextChunks(*r));
    mime->setData(QStringLiteral("image/png"), QByteArray(png.data(), static_cast<qsizetype>(png.size())));
  } catch (const Error&) {
    withParameters = false;  // the pixels alone still paste
  }
  QGuiApplication::clipboard()->setMimeData(mime);
  statusBar()->showMessage(withParameters ? tr("Copied the image (%1×%2, with its parameters)").arg(r->image.width()).arg(r->image.height())
                                          : tr("Copied the image (%1×%2)").arg(r->image.width()).arg(r->image.height()),
                           5000);
  return true;
}

bool MainWindow::copyParameters() {
  const auto id = m_history->currentNode();
  if (!id) return false;
  QGuiApplication::clipboard()->setText(parametersText(*m_history->record(*id)));
  statusBar()->showMessage(tr("Copied the image's parameters"), 5000);
  return true;
}

bool MainWindow::pasteParameters() {
  const QString text = QGuiApplication::clipboard()->text().trimmed();
  if (text.isEmpty()) {
    statusBar()->showMessage(tr("The clipboard holds no text to take parameters from"), 5000);
    return false;
  }
  const auto parameters = parse_a1111_parameters(text.toStdString());
  m_promptEditor->setPrompts(QString::fromStdString(parameters.prompt), QString::fromStdString(parameters.negative_prompt));
  const QStringList notes = m_parameters->applyImageParameters(parameters);
  statusBar()->showMessage(notes.isEmpty() ? tr("Parameters from the clipboard")
                                           : tr("Parameters from the clipboard; %1").arg(notes.join(QStringLiteral("; "))),
                           10000);
  return true;
}

void MainWindow::updateCompareAction(bool hasParent) {
  // The user's choice stays checked while an image without a parent is shown, and comes back with
  // the next edit: stepping through the history should not switch it off.
  m_compareAction->setEnabled(hasParent);
  m_canvas->setCompare(hasParent && m_compareAction->isChecked());
}

void MainWindow::createHelpMenu() {
  auto* help = menuBar()->addMenu(tr("&Help"));
  auto* guide = help->addAction(tr("&User Guide"), this, &MainWindow::showUserGuide);
  guide->setObjectName(QStringLiteral("userGuideAction"));
  guide->setShortcut(QKeySequence::HelpContents);
  auto* keys = help->addAction(tr("&Keyboard Shortcuts"), this, &MainWindow::showShortcuts);
  keys->setObjectName(QStringLiteral("shortcutsAction"));
  keys->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Slash));
  help->addSeparator();
  help->addAction(tr("&About fisedit"), this, &MainWindow::showAbout);
}

QString MainWindow::userGuidePath() {
  const QStringList candidates = {
      QCoreApplication::applicationDirPath() + QStringLiteral("/../share/doc/fisedit/user-guide.md"),  // installed
#ifdef FISEDIT_DOCS_DIR
      QStringLiteral(FISEDIT_DOCS_DIR "/user-guide.md"),  // the source tree, for runs from the build tree
#endif
  };
  for (const auto& file : candidates)
    if (QFileInfo::exists(file)) return QFileInfo(file).canonicalFilePath();
  return {};
}

void MainWindow::showUserGuide() {
  if (auto* open = findChild<QDialog*>(QStringLiteral("userGuideDialog"))) {
    open->raise();
    open->activateWindow();
    return;
  }
  const QString path = userGuidePath();
  if (path.isEmpty()) {
    showError(tr("<b>The user guide is not installed</b><br>It is docs/user-guide.md in fisedit's source."));
    return;
  }
  auto* dialog = new QDialog(this);
  dialog->setObjectName(QStringLiteral("userGuideDialog"));
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setWindowTitle(tr("fisedit User Guide"));
  auto* browser = new GuideBrowser;
  browser->setObjectName(QStringLiteral("userGuideBrowser"));
  browser->setOpenExternalLinks(true);  // web links go to the browser; the guide's own anchors stay here
  browser->document()->setDocumentMargin(12);
  browser->setSource(QUrl::fromLocalFile(path), QTextDocument::MarkdownResource);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::close);
  auto* layout = new QVBoxLayout(dialog);
  layout->addWidget(browser);
  layout->addWidget(buttons);
  dialog->resize(kGuideImageWidth + 120, 720);
  dialog->show();
}

void MainWindow::showShortcuts() {
  if (auto* open = findChild<QDialog*>(QStringLiteral("shortcutsDialog"))) {
    open->raise();
    open->activateWindow();
    return;
  }
  auto* dialog = new QDialog(this);
  dialog->setObjectName(QStringLiteral("shortcutsDialog"));
  dialog->setAttribute(Qt::WA_DeleteOnClose);
  dialog->setWindowTitle(tr("Keyboard Shortcuts"));
  auto* list = new QTreeWidget;
  list->setObjectName(QStringLiteral("shortcutList"));
  list->setColumnCount(2);
  list->setHeaderLabels({tr("Action"), tr("Keys")});
  list->setRootIsDecorated(false);
  list->setSelectionMode(QAbstractItemView::NoSelection);

  // Read from the actions, so a shortcut changed in the code is the one listed: the menus in menu
  // order, then the actions that live elsewhere (toolbars, the canvas, the history).
  QSet<const QAction*> listed;
  const auto section = [list](const QString& title) {
    auto* item = new QTreeWidgetItem(list, {title});
    QFont bold = item->font(0);
    bold.setBold(true);
    item->setFont(0, bold);
    item->setFirstColumnSpanned(true);
    return item;
  };
  const auto row = [list](const QString& action, const QString& keys) { new QTreeWidgetItem(list, {action, keys}); };
  std::function<void(const QMenu*)> addMenu = [&](const QMenu* menu) {
    for (const QAction* action : menu->actions()) {
      if (action->menu()) addMenu(action->menu());
      if (action->isSeparator() || action->shortcuts().isEmpty() || listed.contains(action)) continue;
      listed.insert(action);
      row(withoutMnemonic(action->text()), shortcutText(action));
    }
  };
  for (const QAction* top : menuBar()->actions()) {
    if (!top->menu()) continue;
    section(withoutMnemonic(top->text()));
    addMenu(top->menu());
  }
  bool othersTitled = false;
  for (const QAction* action : findChildren<QAction*>()) {
    if (action->isSeparator() || action->shortcuts().isEmpty() || listed.contains(action)) continue;
    if (!std::exchange(othersTitled, true)) section(tr("Elsewhere"));
    listed.insert(action);
    row(withoutMnemonic(action->text()), shortcutText(action));
  }
  // The canvas's keys and gestures that are not actions.
  section(tr("On the image"));
  row(tr("Show the previous image (hold)"), tr("Space"));
  row(tr("Zoom about the pointer"), tr("Mouse wheel"));
  row(tr("Pan"), tr("Drag (middle button while painting)"));
  row(tr("Move the before/after divider"), tr("Drag the divider"));

  list->header()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close);
  connect(buttons, &QDialogButtonBox::rejected, dialog, &QDialog::close);
  auto* layout = new QVBoxLayout(dialog);
  layout->addWidget(list);
  layout->addWidget(buttons);
  dialog->resize(560, 640);
  dialog->show();
}

}  // namespace fisedit::ui
