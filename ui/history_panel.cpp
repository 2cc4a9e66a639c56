// The history tree widget (history_panel.h): nodes with thumbnails, descriptions, selection and removal.
#include "ui/history_panel.h"

#include "ui/word_diff.h"

#include <QAction>
#include <QFileInfo>
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

}  // namespace

QString percent(double fraction) {
  // Below 1% says so rather than "0%": a small edit still changed something.
  if (fraction > 0 && fraction < 0.01) return QObject::tr("<1%");
  return QStringLiteral("%1%").arg(fraction * 100.0, 0, 'f', 0);
}

namespace {

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

  m_deleteAction = new QAction(tr("Delete"), m_tree);
  m_deleteAction->setObjectName(QStringLiteral("deleteNodeAction"));
  m_deleteAction->setShortcut(QKeySequence::Delete);
  m_deleteAction->setShortcutContext(Qt::WidgetShortcut);  // only while the tree has focus: Delete edits text elsewhere
  connect(m_deleteAction, &QAction::triggered, this, &HistoryPanel::removeCurrent);
  m_tree->addAction(m_deleteAction);
  updateDeleteAction();

  connect(m_tree, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
    updateDeleteAction();
    if (item) emit currentNodeChanged(item->data(0, Qt::UserRole).toULongLong());
  });
}

int HistoryPanel::subtreeSize(quint64 id) const {
  const QTreeWidgetItem* item = m_items.value(id);
  if (!item) return 0;
  int n = 1;
  for (int i = 0; i < item->childCount(); ++i) n += subtreeSize(item->child(i)->data(0, Qt::UserRole).toULongLong());
  return n;
}

void HistoryPanel::updateDeleteAction() {
  const auto id = currentNode();
  const int n = id ? subtreeSize(*id) : 0;
  // Says how much goes before it goes; Edit > Undo brings it back.
  m_deleteAction->setText(n > 1 ? tr("Delete (with the %n image(s) made from it)", nullptr, n - 1) : tr("Delete"));
  m_deleteAction->setEnabled(n > 0);
}

QString HistoryPanel::describe(const HistoryRecord& r, double fullMs) {
  // "(2/4)": the second image of a batch of four, made by one Generate (or one "Edit all in batch").
  const QString batch = r.inBatch() ? QStringLiteral(" (%1/%2)").arg(r.batch.index).arg(r.batch.size) : QString();
  // Image to image: the start image's name and strength after the steps.
  const QString start = r.request.init_image || !r.request.init_image_name.empty()
                            ? tr(" · from %1 at %2").arg(QString::fromStdString(r.request.init_image_name).isEmpty()
                                                             ? tr("a picture")
                                                             : QString::fromStdString(r.request.init_image_name))
                                  .arg(r.request.strength, 0, 'f', 2)
                            : QString();
  if (!r.isEdit())
    return tr("seed %1%2 · %3 steps%6 · %4\n%5")
        .arg(r.request.seed)
        .arg(batch)
        .arg(r.request.steps)
        .arg(seconds(r.totalMs), QString::fromStdString(r.request.prompt), start);
  QString line = tr("%1%2\n%3 re-rendered · %4")
                     .arg(wordDiffText(r.parentPrompt, QString::fromStdString(r.request.prompt)), batch)
                     .arg(percent(changedFraction(r)))
                     .arg(seconds(editMs(r)));
  // The speed-up is the edit's alone: a rebuild of the parent's cache first is shown apart.
  if (r.regeneration.nodes > 0) line += tr(" (+%1 cache rebuild)").arg(seconds(r.regeneration.ms));
  if (fullMs > 0 && editMs(r) > 0) line += tr(" · %1× faster").arg(fullMs / editMs(r), 0, 'f', 1);
  return line;
}

QString HistoryPanel::toolTip(const HistoryRecord& r) {
  QString prompt = QString::fromStdString(r.request.prompt).toHtmlEscaped();
  if (r.inBatch())
    prompt += QStringLiteral("<br><small>") +
              tr("Image %1 of a batch of %2 (one Generate; \"Edit all in batch\" edits them together)")
                  .arg(r.batch.index)
                  .arg(r.batch.size)
                  .toHtmlEscaped() +
              QStringLiteral("</small>");
  if (!r.isEdit()) return prompt;
  QStringList details;
  switch (r.edit.mask_mode) {
    case MaskMode::automatic: details << tr("region: automatic"); break;
    case MaskMode::painted: details << tr("region: painted"); break;
    case MaskMode::intersect: details << tr("region: both (intersect)"); break;
  }
  if (r.edit.margin > 0 && r.edit.mask_mode != MaskMode::painted) details << tr("margin %1").arg(r.edit.margin);
  // How the region came to its size: what was painted or detected, and what widened it.
  const double painted = paintedFraction(r);
  const QString widened = tr("widened by the margin (%1 px) and blended over %2 px at its edge")
                              .arg(r.edit.margin * 8)
                              .arg(2 * r.edit.feather);
  QString region;
  if (r.edit.mask_mode == MaskMode::painted)
    region = tr("%1 of the image may change: the %2 painted, rounded out to whole 8-px latent cells, %3")
                 .arg(percent(changedFraction(r)), percent(painted), widened);
  else if (r.edit.mask_mode == MaskMode::intersect)
    region = tr("%1 of the image may change: the detected region inside the %2 painted, %3")
                 .arg(percent(changedFraction(r)), percent(painted), widened);
  else
    region = tr("%1 of the image may change: where the detection steps saw the image move, in 8-px latent cells, %2")
                 .arg(percent(changedFraction(r)), widened);
  region += tr("; the model recomputed %1 of the latent cells").arg(percent(r.stats.edit_fraction));
  if (r.edit.mask_mode != MaskMode::painted) {
    details << steps(r.stats.detect_steps, tr("detection step"), tr("detection steps"));
    details << (r.edit.attention_control
                    ? tr("attention control: %1").arg(steps(r.stats.attention_control_steps, tr("step"), tr("steps")))
                    : tr("attention control: off"));
  }
  return prompt + QStringLiteral("<br><small>") + details.join(QStringLiteral(" · ")).toHtmlEscaped() +
         QStringLiteral("<br>") + region.toHtmlEscaped() + QStringLiteral("</small>");
}

void HistoryPanel::addRecord(const HistoryRecord& record, bool select) {
  auto* item = new QTreeWidgetItem;
  item->setData(0, Qt::UserRole, QVariant::fromValue(record.id));
  item->setIcon(0, thumbnail(record));
  QTreeWidgetItem* parent = record.parent ? m_items.value(*record.parent) : nullptr;
  // Siblings stay in id order (the order they were made in), so a subtree put back by an undo returns
  // to its place.
  const auto idOf = [](const QTreeWidgetItem* i) { return i->data(0, Qt::UserRole).toULongLong(); };
  if (parent) {
    int at = parent->childCount();
    while (at > 0 && idOf(parent->child(at - 1)) > record.id) --at;
    parent->insertChild(at, item);
    parent->setExpanded(true);
  } else {
    int at = m_tree->topLevelItemCount();
    while (at > 0 && idOf(m_tree->topLevelItem(at - 1)) > record.id) --at;
    m_tree->insertTopLevelItem(at, item);
  }
  m_records.insert(record.id, record);
  m_items.insert(record.id, item);
  refreshItem(record.id);
  if (select) m_tree->setCurrentItem(item);
}

void HistoryPanel::refreshItem(quint64 id) {
  QTreeWidgetItem* item = m_items.value(id);
  const auto found = m_records.constFind(id);
  if (!item || found == m_records.cend()) return;
  const HistoryRecord& record = *found;
  // The root's time: the full generation this node's edits are compared with.
  double fullMs = 0;
  for (auto up = record.parent; up;) {
    const auto it = m_records.constFind(*up);
    if (it == m_records.cend()) break;
    if (!it->parent) fullMs = it->totalMs;
    up = it->parent;
  }
  QString text = describe(record, fullMs);
  QString tip = toolTip(record);
  if (record.restored) {
    text += tr(" · view only");
    tip += QStringLiteral("<br><i>") +
           tr("View only: made with %1, which is not the open model. It can be shown and exported; editing it "
              "offers to switch to its model.")
               .arg(record.model.path.isEmpty() ? tr("an unknown model") : QFileInfo(record.model.path).fileName())
               .toHtmlEscaped() +
           QStringLiteral("</i>");
  }
  item->setText(0, text);
  item->setToolTip(0, tip);
  QFont font = item->font(0);
  font.setItalic(record.restored);
  item->setFont(0, font);
}

QHash<quint64, quint64> HistoryPanel::makeViewOnly() {
  QHash<quint64, quint64> ids;
  for (const HistoryRecord& r : records())  // in id order: parents keep smaller ids than their children
    if (!r.restored) ids.insert(r.id, newViewOnlyId());
  renumber(ids, true);
  return ids;
}

void HistoryPanel::clear() {
  m_tree->clear();
  m_records.clear();
  m_items.clear();
  updateDeleteAction();
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

QList<HistoryRecord> HistoryPanel::batchMembers(quint64 id) const {
  const HistoryRecord* r = record(id);
  if (!r || !r->inBatch()) return {};
  QList<HistoryRecord> members;
  for (const HistoryRecord& other : std::as_const(m_records))
    if (other.batch.id == r->batch.id) members << other;
  std::sort(members.begin(), members.end(), [](const HistoryRecord& a, const HistoryRecord& b) {
    return a.batch.index != b.batch.index ? a.batch.index < b.batch.index : a.id < b.id;
  });
  return members;
}

void HistoryPanel::selectNode(quint64 id) {
  if (auto* item = m_items.value(id)) m_tree->setCurrentItem(item);
}

void HistoryPanel::adoptIds(const QHash<quint64, quint64>& ids) { renumber(ids, false); }

void HistoryPanel::renumber(const QHash<quint64, quint64>& ids, bool restored) {
  // Rebuilt in one pass, so an old id equal to another node's new id cannot mix the two up.
  QHash<quint64, HistoryRecord> records;
  QHash<quint64, QTreeWidgetItem*> items;
  for (HistoryRecord r : std::as_const(m_records)) {
    QTreeWidgetItem* item = m_items.value(r.id);
    if (restored) r.restored = true;  // every node: those not renumbered were view-only already
    if (const auto it = ids.constFind(r.id); it != ids.cend()) {
      r.id = *it;
      r.restored = restored;
      item->setData(0, Qt::UserRole, QVariant::fromValue(r.id));
    }
    if (r.parent) r.parent = ids.value(*r.parent, *r.parent);
    records.insert(r.id, r);
    items.insert(r.id, item);
  }
  m_records = std::move(records);
  m_items = std::move(items);
  for (const quint64 id : ids) refreshItem(id);
  updateDeleteAction();
}

void HistoryPanel::forgetSubtree(QTreeWidgetItem* item, QList<HistoryRecord>& removed) {
  const quint64 id = item->data(0, Qt::UserRole).toULongLong();
  removed.append(m_records.value(id));  // parents before their children
  for (int i = 0; i < item->childCount(); ++i) forgetSubtree(item->child(i), removed);
  m_records.remove(id);
  m_items.remove(id);
}

void HistoryPanel::removeCurrent() {
  QTreeWidgetItem* item = m_tree->currentItem();
  if (!item) return;
  const quint64 id = item->data(0, Qt::UserRole).toULongLong();
  QList<HistoryRecord> removed;
  forgetSubtree(item, removed);
  delete item;  // Qt selects a neighbour, which becomes the current image
  updateDeleteAction();
  emit nodeRemoved(id, removed);
}

void HistoryPanel::restoreSubtree(const QList<HistoryRecord>& records) {
  if (records.isEmpty()) return;
  for (const HistoryRecord& r : records) addRecord(r);  // parents first, so each finds its parent
  selectNode(records.first().id);
}

}  // namespace fisedit::ui
