// Where the window's file dialogs start (the last folder of each kind) and File > Recent Projects and Recent Models, kept in the settings.
#include "ui/main_window.h"

#include <QAction>
#include <QDir>
#include <QFileInfo>
#include <QMenu>
#include <QSettings>

namespace fisedit::ui {

QSettings appSettings();  // main_window.cpp

namespace {

QString browseKey(int kind) {
  static const QString keys[] = {QStringLiteral("browse/models"), QStringLiteral("browse/projects"),
                                 QStringLiteral("browse/exports")};
  return keys[kind];
}

QString recentKey(int kind) {
  static const QString keys[] = {QStringLiteral("recent/projects"), QStringLiteral("recent/models")};
  return keys[kind];
}

const QString kRecentConfigsKey = QStringLiteral("recent/modelConfigDirs");

// "~/models" rather than "/home/me/models": the menu is wide enough for the part that tells entries apart.
QString shortFolder(const QString& path) {
  const QString folder = QDir::toNativeSeparators(QFileInfo(path).absolutePath());
  const QString home = QDir::toNativeSeparators(QDir::homePath());
  return folder.startsWith(home) ? QStringLiteral("~") + folder.mid(home.size()) : folder;
}

}  // namespace

QString MainWindow::browseDir(BrowseKind kind) const {
  const QString remembered = appSettings().value(browseKey(static_cast<int>(kind))).toString();
  if (!remembered.isEmpty() && QFileInfo(remembered).isDir()) return remembered;
  // Nothing remembered yet (or the folder is gone): where this kind of file most likely is.
  if (kind == BrowseKind::projects && !m_projectPath.isEmpty()) return QFileInfo(m_projectPath).absolutePath();
  // The built-in model's folder is in the install or source tree, where nobody keeps their models.
  if (kind == BrowseKind::models && m_model && QFileInfo(m_model->source) != QFileInfo(builtinModelPath()))
    return QFileInfo(m_model->source).absolutePath();
  return QDir::homePath();
}

void MainWindow::rememberBrowseDir(BrowseKind kind, const QString& path) {
  if (path.isEmpty()) return;
  // The folder holding the file or folder used: a model folder's parent is where the models are.
  appSettings().setValue(browseKey(static_cast<int>(kind)), QFileInfo(path).absolutePath());
}

void MainWindow::createRecentMenus(QMenu* file) {
  file->addSeparator();
  m_recentProjectsMenu = file->addMenu(tr("Recent P&rojects"));
  m_recentProjectsMenu->setObjectName(QStringLiteral("recentProjectsMenu"));
  m_recentModelsMenu = file->addMenu(tr("Recent &Models"));
  m_recentModelsMenu->setObjectName(QStringLiteral("recentModelsMenu"));
  fillRecentMenu(RecentKind::projects);
  fillRecentMenu(RecentKind::models);
}

void MainWindow::addRecent(RecentKind kind, const QString& path, const QString& configDir) {
  auto settings = appSettings();
  const QString key = recentKey(static_cast<int>(kind));
  const QString absolute = QFileInfo(path).absoluteFilePath();
  QStringList paths = settings.value(key).toStringList();
  paths.removeAll(absolute);
  paths.prepend(absolute);
  while (paths.size() > kMaxRecent) paths.removeLast();
  settings.setValue(key, paths);
  if (kind == RecentKind::models) {
    QVariantMap configs = settings.value(kRecentConfigsKey).toMap();
    for (auto it = configs.begin(); it != configs.end();)  // only the listed models' folders are kept
      it = paths.contains(it.key()) ? std::next(it) : configs.erase(it);
    if (configDir.isEmpty())
      configs.remove(absolute);
    else
      configs.insert(absolute, configDir);
    settings.setValue(kRecentConfigsKey, configs);
  }
  fillRecentMenu(kind);
}

void MainWindow::fillRecentMenu(RecentKind kind) {
  QMenu* menu = kind == RecentKind::projects ? m_recentProjectsMenu : m_recentModelsMenu;
  menu->clear();
  const QString key = recentKey(static_cast<int>(kind));
  const QStringList paths = appSettings().value(key).toStringList();
  if (paths.isEmpty()) {
    menu->addAction(kind == RecentKind::projects ? tr("No recent projects") : tr("No recent models"))->setEnabled(false);
    return;
  }
  for (int i = 0; i < paths.size(); ++i) {
    const QString path = paths[i];
    // "&1 house.fisedit  (~/art)": the number is the keyboard shortcut, the folder tells apart entries of one name.
    auto* action = menu->addAction(QStringLiteral("&%1 %2  (%3)").arg(i + 1).arg(QFileInfo(path).fileName(), shortFolder(path)));
    action->setData(path);
    action->setToolTip(path);
    action->setStatusTip(path);
    connect(action, &QAction::triggered, this, [this, kind, path] { openRecent(kind, path); });
  }
  menu->addSeparator();
  auto* clearAction = menu->addAction(tr("&Clear Menu"));
  clearAction->setObjectName(QStringLiteral("clearRecentAction"));
  connect(clearAction, &QAction::triggered, this, [this, kind, key] {
    appSettings().remove(key);
    if (kind == RecentKind::models) appSettings().remove(kRecentConfigsKey);
    fillRecentMenu(kind);
  });
}

void MainWindow::openRecent(RecentKind kind, const QString& path) {
  if (!QFileInfo::exists(path)) {
    // Moved or deleted since: the entry goes, and the banner says why nothing opened.
    auto settings = appSettings();
    const QString key = recentKey(static_cast<int>(kind));
    QStringList paths = settings.value(key).toStringList();
    paths.removeAll(path);
    settings.setValue(key, paths);
    fillRecentMenu(kind);
    showError(tr("<b>%1 is no longer there</b><br>%2 was moved or deleted; it is removed from File &gt; %3.")
                  .arg(QFileInfo(path).fileName().toHtmlEscaped(), path.toHtmlEscaped(),
                       kind == RecentKind::projects ? tr("Recent Projects") : tr("Recent Models")));
    return;
  }
  if (kind == RecentKind::projects) {
    openProject(path);
  } else {
    const QString configDir = appSettings().value(kRecentConfigsKey).toMap().value(path).toString();
    requestLoad(path, QFileInfo(configDir).isDir() ? configDir : QString());
  }
}

}  // namespace fisedit::ui
