#pragma once
// What the window keeps of one history node: a copy made on the worker thread, so the widgets never
// touch the EditSession (which is not thread-safe) and a node's image stays showable after its
// activation cache is evicted.
#include "pipeline/edit_session.h"
#include "pipeline/generation.h"

#include <QImage>
#include <QMetaType>
#include <QString>

#include <cstdint>
#include <optional>

namespace fisedit::ui {

// The model a node was made with: its edits can be replayed (its cache rebuilt) with that model only.
struct ModelIdentity {
  QString path;         // as opened
  QString family;       // "SD1.x" / "SD2.x"
  QString fingerprint;  // ModelSummary::fingerprint; empty when unknown (projects written before it was kept)
  bool operator==(const ModelIdentity&) const = default;
};

// The most images one Generate makes (the parameters' batch count; fisedit-cli's --batch-count has
// the same limit), and so the most a batch holds.
inline constexpr int kMaxBatchCount = 16;

struct BatchTag {
  quint64 id = 0;  // 0: not in a batch; a project file keeps it below 2^53 (readers in any language)
  int index = 0;   // 1-based
  int size = 0;    // as made: deleting a node later does not renumber the others
  bool operator==(const BatchTag&) const = default;
};

struct HistoryRecord {
  quint64 id = 0;
  std::optional<quint64> parent;  // none for a generation (a root)
  GenerationRequest request;      // resolved: the parameters the image was made with
  QImage image;                   // RGB888
  QImage changedRegion;           // edits only: Grayscale8, white where pixels may differ from the parent's
  QString parentPrompt;           // edits only: for the word diff shown in the history
  EditStats stats;                // edits only
  EditRequest edit;               // edits only: the options used, with the painted mask (a replay needs it)
  RegenerationStats regeneration; // edits only: the rebuild of the parent's cache this edit needed first
  GenerationTimings timings;      // the engine's stages, as its result reported them
  ModelIdentity model;            // what made it: the open model, or for a restored node the project's
  QString device;                 // the engine's that made it ("CPU (float32, 2 threads)"); empty when unknown
  double totalMs = 0;             // the whole job, as the user waited for it
  // Read from a project file and not adopted by the worker's EditSession (the model open is not the
  // one it was made with, or its edit cannot be replayed): it can be viewed and exported, and
  // "Generate" from it starts a new generation with its parameters. Once adopted, a node read from a
  // project gets a session id and is edited like any other (its cache rebuilt first).
  bool restored = false;
  // Made by one press of Generate with a batch count above 1 (seeds seed, seed+1, ...), or by "Edit all
  // in batch" over such a batch: the nodes of one batch share `batch.id` (a random tag, not a node id,
  // so renumbering leaves it alone) and are numbered 1..size in the order they were made. id 0: none.
  BatchTag batch;
  bool isEdit() const { return parent.has_value(); }
  bool inBatch() const { return batch.id != 0; }
};

// "N% re-rendered", the one figure the window shows and exports for an edit: the share of the image's
// pixels the edit was allowed to change, i.e. the white of its changed region (what "Changed region"
// shows and the exported mask holds), feathered edge included. 0 for a generation.
double changedFraction(const HistoryRecord& record);
// The edit's own time, as the user waited for it, without the rebuild of its parent's cache that
// preceded it (shown apart); a generation's whole time.
double editMs(const HistoryRecord& record);
// The share of the image's pixels the user painted for an edit's region; 0 when none was painted.
double paintedFraction(const HistoryRecord& record);

// Deep copies: the QImage owns its pixels, so it may cross threads after the Image8 is gone.
QImage toQImage(const Image8& image);
// RGB888 (or Grayscale8) back to the engine's layout, for writing PNGs with our text chunks.
Image8 toImage8(const QImage& image);

}  // namespace fisedit::ui

Q_DECLARE_METATYPE(fisedit::ui::HistoryRecord)
Q_DECLARE_METATYPE(fisedit::GenerationRequest)
Q_DECLARE_METATYPE(fisedit::EditRequest)
