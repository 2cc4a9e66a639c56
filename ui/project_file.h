#pragma once
// The history on disk, in two shapes with one JSON schema: an export folder (history.json beside
// NNN.png with AUTOMATIC1111's parameters chunk and NNN-mask.png for each edit's changed region), for
// other tools and people; and a .fisedit project (one JSON file, images embedded as base64 PNG), for
// opening again. Both are written atomically, so a crash never leaves half a history behind.
//
// No activation caches are stored: they are gigabytes, and the engine can rebuild them. Nodes read
// back are marked `restored`; the window shows and exports them but does not edit them.
#include "ui/history_record.h"

#include <QList>
#include <QString>

namespace fisedit::ui {

inline constexpr int kHistoryFormatVersion = 1;
// Restored nodes get ids from here up, so they never collide with the ids the worker's EditSession
// hands out (which count from 1 for each engine).
inline constexpr quint64 kRestoredIdBase = quint64{1} << 48;

struct ProjectContent {
  QString modelPath;
  QString modelFamily;
  QList<HistoryRecord> records;  // parents before their children
};

// What a read returns: the content, or the message to show (qBittorrent's readFile idiom, without
// C++23's std::expected).
struct ProjectReadResult {
  ProjectContent content;
  QString error;
  bool ok() const { return error.isEmpty(); }
};

// The file stem of the index-th node (0-based) in an export: "001", "002", ...
QString nodeFileStem(int index);

// Each returns an empty string on success, else a message for the user. `folder` must not exist yet
// (or be empty, as a file dialog may have created it).
QString exportHistory(const QString& folder, const ProjectContent& content);
QString saveProject(const QString& path, const ProjectContent& content);
ProjectReadResult loadProject(const QString& path);

}  // namespace fisedit::ui
