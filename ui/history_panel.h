#pragma once
// The tree of generations (roots) and prompt edits (children) with thumbnails. Selecting a node shows
// it and makes it the base of the next edit, so editing an older node starts a branch.
#include "ui/history_record.h"

#include <QHash>
#include <QWidget>

#include <optional>

class QAction;
class QTreeWidget;
class QTreeWidgetItem;

namespace fisedit::ui {

// An edit's share as the window writes it everywhere: "12%", "<1%" for a sliver.
QString percent(double fraction);

class HistoryPanel : public QWidget {
  Q_OBJECT

public:
  explicit HistoryPanel(QWidget* parent = nullptr);

  // Adds the node under its parent (if any), among its siblings in id order, and selects it unless
  // `select` is false (a batch's later images while the user looks at another node).
  void addRecord(const HistoryRecord& record, bool select = true);
  // Puts back a removed subtree (parents first, as nodeRemoved gave it) and selects its top node.
  void restoreSubtree(const QList<HistoryRecord>& records);
  // How many nodes removing `id` takes: the node and everything made from it.
  int subtreeSize(quint64 id) const;
  void clear();
  int nodeCount() const { return static_cast<int>(m_records.size()); }
  std::optional<quint64> currentNode() const;
  const HistoryRecord* record(quint64 id) const;
  // Every node in id order, which puts parents before their children (ids grow with creation).
  QList<HistoryRecord> records() const;
  // The nodes of `id`'s batch still in the panel (`id` among them), by their number in the batch;
  // empty when it is in none.
  QList<HistoryRecord> batchMembers(quint64 id) const;
  void selectNode(quint64 id);
  // Gives nodes read from a project the ids the worker's session adopted them under (old -> new) and
  // makes them editable (restored = false); parent links follow. The tree and selection stay as they are.
  void adoptIds(const QHash<quint64, quint64>& ids);
  // Every node becomes view-only (restored = true), image and record kept: the worker's session that
  // held them is gone (another model or device). Rows say so; adoptIds() makes them editable again.
  // They are renumbered from kViewOnlyIdBase up, so the new session's ids cannot meet theirs; returns
  // old -> new for the nodes renumbered.
  QHash<quint64, quint64> makeViewOnly();
  // A fresh id in that range, for a view-only node put back from outside the panel (an undo).
  quint64 newViewOnlyId() { return m_nextViewOnlyId++; }
  static constexpr quint64 kViewOnlyIdBase = quint64{1} << 50;  // above a project's (kRestoredIdBase)
  QTreeWidget* tree() const { return m_tree; }

  // One line for a node: "seed 42 · 25 steps · 3.1 s" or "+hat -cap · 12% · 0.8 s".
  // A node's line in the tree. For an edit, `fullMs` (> 0) is the time of its root, the full generation
  // the edit is measured against: the line then says how many times faster the edit was.
  static QString describe(const HistoryRecord& record, double fullMs = 0);
  // The node's tooltip (rich text): its prompt, and for an edit how it was made ("region: automatic ·
  // 1 detection step · attention control: 1 step").
  static QString toolTip(const HistoryRecord& record);

signals:
  void currentNodeChanged(quint64 id);
  // The node and its subtree are gone from the panel: `removed` holds their records, parents first,
  // for an undo. The window tells the worker.
  void nodeRemoved(quint64 id, const QList<fisedit::ui::HistoryRecord>& removed);

public slots:
  void removeCurrent();

private:
  void forgetSubtree(QTreeWidgetItem* item, QList<HistoryRecord>& removed);
  void updateDeleteAction();
  // The row's text, tooltip and view-only mark, from its record.
  void refreshItem(quint64 id);
  // Gives nodes new ids (old -> new), parent links following, and sets their `restored` flag.
  void renumber(const QHash<quint64, quint64>& ids, bool restored);

  QTreeWidget* m_tree = nullptr;
  QHash<quint64, HistoryRecord> m_records;
  QHash<quint64, QTreeWidgetItem*> m_items;
  QAction* m_deleteAction = nullptr;
  quint64 m_nextViewOnlyId = kViewOnlyIdBase;
};

}  // namespace fisedit::ui
