#pragma once
// The history on disk, in two shapes with one JSON schema: an export folder (history.json beside
// NNN.png with AUTOMATIC1111's parameters chunk and NNN-mask.png for each edit's changed region), for
// other tools and people; and a .fisedit project (one JSON file, images embedded as base64 PNG), for
// opening again. Both are written atomically, so a crash never leaves half a history behind.
//
// No activation caches are stored: they are gigabytes, and the engine can rebuild them from what is
// stored: every node's resolved request, its edit request with the painted mask, its image, and the
// model it was made with (the project's, or the node's own where a history mixes models). Nodes read
// back are marked `restored`; the window hands them to the worker's EditSession (adopt) when the open
// model has their model's fingerprint, and they become editable, their caches rebuilt on the first
// edit. Fields added since version 1 (fingerprints, per-node models, painted masks, attention control,
// batch tags) are optional, so older files still open, and older fisedit versions read newer files
// (ignoring them).
// A node's request and edit settings are written by the engine's io/request_json.h, in its snake_case
// keys (prompt, negative_prompt, cfg_scale, ...; edit: mask_mode, mask_margin, ...): version 2. Version 1
// files spelled them in camelCase (negativePrompt, cfgScale; maskMode, margin, ...) and still open; an
// older fisedit refuses a version 2 file instead of reading its renamed keys as missing.
#include "ui/history_record.h"

#include "io/image_file.h"

#include <QList>
#include <QString>

namespace fisedit::ui {

inline constexpr int kHistoryFormatVersion = 2;      // the version written
inline constexpr int kOldestHistoryFormatVersion = 1;  // the oldest read
// Restored nodes get ids from here up, so they never collide with the ids the worker's EditSession
// hands out (which count from 1 for each engine).
inline constexpr quint64 kRestoredIdBase = quint64{1} << 48;

struct ProjectContent {
  // The project's model: that of every node that does not name its own (HistoryRecord::model).
  QString modelPath;
  QString modelFamily;
  QString modelFingerprint;  // ModelSummary::fingerprint; empty in files written before it was recorded
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

// The text chunks of a node's PNG: AUTOMATIC1111's `parameters`, and `fisedit`, the full record as
// JSON with the keys fisedit-cli writes (prompt, negative_prompt, seed, steps, cfg_scale, scheduler,
// width, height, model, model_family, model_fingerprint, device, timings_ms; edits add edit_of and
// edit, with attention_control and attention_control_steps). An unknown device is left out.
TextChunks imageTextChunks(const HistoryRecord& record);

// Each returns an empty string on success, else a message for the user. `folder` must not exist yet
// (or be empty, as a file dialog may have created it).
QString exportHistory(const QString& folder, const ProjectContent& content);
QString saveProject(const QString& path, const ProjectContent& content);
ProjectReadResult loadProject(const QString& path);

}  // namespace fisedit::ui
