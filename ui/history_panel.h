#pragma once
// The tree of generations (roots) and prompt edits (children) with thumbnails. Selecting a node shows
// it and makes it the base of the next edit, so editing an older node starts a branch.
#include "ui/history_record.h"

#include <QHash>
#include <QWidget>

#include <optional>

class QTreeWidget;
class QTreeWidgetItem;

namespace fisedit::ui {

class HistoryPanel : public QWidget {
  Q_OBJECT

public:
  explicit HistoryPanel(QWidget* parent = nullptr);

  // Adds the node under its parent (if any) and selects it.
  void addRecord(const HistoryRecord& record);
  void clear();
  int nodeCount() const { return static_cast<int>(m_records.size()); }
  std::optional<quint64> currentNode() const;
  const HistoryRecord* record(quint64 id) const;
  // Every node in id order, which puts parents before their children (ids grow with creation).
  QList<HistoryRecord> records() const;
  void selectNode(quint64 id);
  // Gives nodes read from a project the ids the worker's session adopted them under (old -> new) and
  // makes them editable (restored = false); parent links follow. The tree and selection stay as they are.
  void adoptIds(const QHash<quint64, quint64>& ids);
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
  // The node and its subtree are gone from the panel; the window tells the worker.
  void nodeRemoved(quint64 id);

public slots:
  void removeCurrent();

private:
  void forgetSubtree(QTreeWidgetItem* item);

  QTreeWidget* m_tree = nullptr;
  QHash<quint64, HistoryRecord> m_records;
  QHash<quint64, QTreeWidgetItem*> m_items;
};

}  // namespace fisedit::ui
