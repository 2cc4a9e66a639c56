// The history tree widget (history_panel.h): nodes with thumbnails, descriptions, selection and removal.
#include "ui/history_panel.h"

#include "ui/word_diff.h"

#include <QAction>
#include <QHeaderView>
#include <QPainter>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <utility>

namespace fisedit::ui {
namespace {

constexpr int kThumbnail = 56;

QString seconds(double ms) { return QStringLiteral("%1 s").arg(ms / 1000.0, 0, 'f', ms < 10000 ? 1 : 0); }

QString steps(int count, const QString& one, const QString& many) {
  return QStringLiteral("%1 %2").arg(count).arg(count == 1 ? one : many);
}

QIcon thumbnail(const HistoryRecord& r) {
  // A fixed square canvas so that portrait and landscape thumbnails line up in the tree.
  QPixmap square(kThumbnail, kThumbnail);
  square.fill(Qt::transparent);
  QPainter painter(&square);
  painter.setRenderHint(QPainter::SmoothPixmapTransform);
  const QImage scaled = r.image.scaled(kThumbnail, kThumbnail, Qt::KeepAspectRatio, Qt::SmoothTransformation);
  painter.drawImage((kThumbnail - scaled.width()) / 2, (kThumbnail - scaled.height()) / 2, scaled);
  return QIcon(square);
}

}  // namespace

HistoryPanel::HistoryPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  m_tree = new QTreeWidget(this);
  m_tree->setObjectName(QStringLiteral("historyTree"));
  m_tree->setHeaderHidden(true);
  m_tree->setColumnCount(1);
  m_tree->setIconSize(QSize(kThumbnail, kThumbnail));
  m_tree->setIndentation(18);
  m_tree->setUniformRowHeights(true);
  m_tree->setWordWrap(true);
  m_tree->setTextElideMode(Qt::ElideRight);
  m_tree->setContextMenuPolicy(Qt::ActionsContextMenu);
  layout->addWidget(m_tree);

  auto* remove = new QAction(tr("Delete (with its edits)"), m_tree);
  remove->setObjectName(QStringLiteral("deleteNodeAction"));
  remove->setShortcut(QKeySequence::Delete);
  remove->setShortcutContext(Qt::WidgetShortcut);  // only while the tree has focus: Delete edits text elsewhere
  connect(remove, &QAction::triggered, this, &HistoryPanel::removeCurrent);
  m_tree->addAction(remove);

  connect(m_tree, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    if (item) emit currentNodeChanged(item->data(0, Qt::UserRole).toULongLong());
  });
}

QString HistoryPanel::describe(const HistoryRecord& r, double fullMs) {
  if (!r.isEdit())
    return tr("seed %1 · %2 steps · %3\n%4")
        .arg(r.request.seed)
        .arg(r.request.steps)
        .arg(seconds(r.totalMs), QString::fromStdString(r.request.prompt));
  QString line = tr("%1\n%2% re-rendered · %3")
                     .arg(wordDiffText(r.parentPrompt, QString::fromStdString(r.request.prompt)))
                     .arg(r.stats.edit_fraction * 100.0, 0, 'f', 0)
                     .arg(seconds(r.totalMs));
  if (fullMs > 0 && r.totalMs > 0) line += tr(" · %1× faster").arg(fullMs / r.totalMs, 0, 'f', 1);
  return line;
}

QString HistoryPanel::toolTip(const HistoryRecord& r) {
  const QString prompt = QString::fromStdString(r.request.prompt).toHtmlEscaped();
  if (!r.isEdit()) return prompt;
  QStringList details;
  switch (r.edit.mask_mode) {
    case MaskMode::automatic: details << tr("region: automatic"); break;
    case MaskMode::painted: details << tr("region: painted"); break;
    case MaskMode::intersect: details << tr("region: both (intersect)"); break;
  }
  if (r.edit.margin > 0) details << tr("margin %1").arg(r.edit.margin);
  if (r.edit.mask_mode != MaskMode::painted) {
    details << steps(r.stats.detect_steps, tr("detection step"), tr("detection steps"));
    details << (r.edit.attention_control
                    ? tr("attention control: %1").arg(steps(r.stats.attention_control_steps, tr("step"), tr("steps")))
                    : tr("attention control: off"));
  }
  return prompt + QStringLiteral("<br><small>") + details.join(QStringLiteral(" · ")).toHtmlEscaped() + QStringLiteral("</small>");
}

void HistoryPanel::addRecord(const HistoryRecord& record) {
  auto* item = new QTreeWidgetItem;
  item->setData(0, Qt::UserRole, QVariant::fromValue(record.id));
  // The root's time: the full generation this node's edits are compared with.
  double fullMs = 0;
  for (auto up = record.parent; up;) {
    const auto it = m_records.constFind(*up);
    if (it == m_records.cend()) break;
    if (!it->parent) fullMs = it->totalMs;
    up = it->parent;
  }
  item->setText(0, describe(record, fullMs));
  item->setIcon(0, thumbnail(record));
  item->setToolTip(0, toolTip(record));
  QTreeWidgetItem* parent = record.parent ? m_items.value(*record.parent) : nullptr;
  if (parent) {
    parent->addChild(item);
    parent->setExpanded(true);
  } else {
    m_tree->addTopLevelItem(item);
  }
  m_records.insert(record.id, record);
  m_items.insert(record.id, item);
  m_tree->setCurrentItem(item);
}

void HistoryPanel::clear() {
  m_tree->clear();
  m_records.clear();
  m_items.clear();
}

std::optional<quint64> HistoryPanel::currentNode() const {
  const auto* item = m_tree->currentItem();
  if (!item) return std::nullopt;
  return item->data(0, Qt::UserRole).toULongLong();
}

const HistoryRecord* HistoryPanel::record(quint64 id) const {
  const auto it = m_records.constFind(id);
  return it == m_records.cend() ? nullptr : &*it;
}

QList<HistoryRecord> HistoryPanel::records() const {
  QList<HistoryRecord> out = m_records.values();
  std::sort(out.begin(), out.end(), [](const HistoryRecord& a, const HistoryRecord& b) { return a.id < b.id; });
  return out;
}

void HistoryPanel::selectNode(quint64 id) {
  if (auto* item = m_items.value(id)) m_tree->setCurrentItem(item);
}

void HistoryPanel::adoptIds(const QHash<quint64, quint64>& ids) {
  // Rebuilt in one pass, so an old id equal to another node's new id cannot mix the two up.
  QHash<quint64, HistoryRecord> records;
  QHash<quint64, QTreeWidgetItem*> items;
  for (HistoryRecord r : std::as_const(m_records)) {
    QTreeWidgetItem* item = m_items.value(r.id);
    if (const auto it = ids.constFind(r.id); it != ids.cend()) {
      r.id = *it;
      r.restored = false;
      item->setData(0, Qt::UserRole, QVariant::fromValue(r.id));
    }
    if (r.parent) r.parent = ids.value(*r.parent, *r.parent);
    records.insert(r.id, r);
    items.insert(r.id, item);
  }
  m_records = std::move(records);
  m_items = std::move(items);
}

void HistoryPanel::forgetSubtree(QTreeWidgetItem* item) {
  for (int i = 0; i < item->childCount(); ++i) forgetSubtree(item->child(i));
  const quint64 id = item->data(0, Qt::UserRole).toULongLong();
  m_records.remove(id);
  m_items.remove(id);
}

void HistoryPanel::removeCurrent() {
  QTreeWidgetItem* item = m_tree->currentItem();
  if (!item) return;
  const quint64 id = item->data(0, Qt::UserRole).toULongLong();
  forgetSubtree(item);
  delete item;  // Qt selects a neighbour, which becomes the current image
  emit nodeRemoved(id);
}

}  // namespace fisedit::ui
