// Export folders and .fisedit projects (project_file.h): the JSON schema, written and read.
#include "ui/project_file.h"

#include "core/error.h"
#include "io/a1111_parameters.h"
#include "io/atomic_file.h"
#include "io/image_file.h"
#include "io/request_json.h"

#include <QBuffer>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHash>
#include <QTemporaryDir>

#include <cerrno>
#include <csignal>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>

namespace fisedit::ui {
namespace {

// The documents are nlohmann::json, as the engine's request module (io/request_json.h) writes and reads
// its part of every node: one JSON library for the whole file, and seeds exact up to 2^64 - 1 (a
// QJsonValue holds no unsigned 64-bit integer).
using Json = nlohmann::json;

const QString kExportFormat = QStringLiteral("fisedit-history");
const QString kProjectFormat = QStringLiteral("fisedit-project");

QString str(const std::string& text) { return QString::fromStdString(text); }

// Text whatever the strings hold (a prompt pasted with a broken character is no reason to fail a save).
std::string dump(const Json& json, int indent = -1) {
  return json.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// The app's own keys are read leniently, as they always were: a missing or mistyped one reads as
// empty or the fallback. The request's keys are read strictly (request_json.h).
const Json* member(const Json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}
QString text(const Json& object, const char* key) {
  const Json* v = member(object, key);
  return v && v->is_string() ? str(v->get<std::string>()) : QString();
}
double number(const Json& object, const char* key) {
  const Json* v = member(object, key);
  return v && v->is_number() ? v->get<double>() : 0.0;
}
std::int64_t integer(const Json& object, const char* key, std::int64_t fallback) {
  const Json* v = member(object, key);
  return v && v->is_number_integer() ? v->get<std::int64_t>() : fallback;
}
const Json& object(const Json& parent, const char* key) {
  static const Json empty = Json::object();
  const Json* v = member(parent, key);
  return v && v->is_object() ? *v : empty;
}

QImage paintedMaskImage(const HistoryRecord& r) {
  return r.isEdit() && r.edit.painted_mask ? toQImage(*r.edit.painted_mask).convertToFormat(QImage::Format_Grayscale8) : QImage();
}

Json nodeJson(const HistoryRecord& r, const ProjectContent& content) {
  Json node = to_json(r.request);  // prompt, negative_prompt, seed, steps, cfg_scale, scheduler, width, height
  node["id"] = r.id;
  node["parent"] = r.parent ? Json(*r.parent) : Json();
  node["device"] = r.device.toStdString();
  node["timings"] = {{"textEncoderMs", r.timings.text_encoder_ms},
                     {"unetMs", r.timings.unet_ms},
                     {"vaeMs", r.timings.vae_ms},
                     {"totalMs", r.timings.total_ms},
                     {"jobMs", r.totalMs}};
  // Only where it is not the project's: a history that mixes models (a project opened view-only,
  // then images made with the open model).
  if (!r.model.path.isEmpty() && (r.model.path != content.modelPath || r.model.fingerprint != content.modelFingerprint))
    node["model"] = {{"path", r.model.path.toStdString()},
                     {"family", r.model.family.toStdString()},
                     {"fingerprint", r.model.fingerprint.toStdString()}};
  // One Generate's batch (or one "Edit all in batch"): the nodes sharing the id, numbered 1..size.
  if (r.inBatch()) node["batch"] = {{"id", r.batch.id}, {"index", r.batch.index}, {"size", r.batch.size}};
  if (r.isEdit()) {
    node["edit"] = edit_settings_to_json(r.edit);
    node["editFraction"] = r.stats.edit_fraction;
    node["changedFraction"] = changedFraction(r);  // written for readers; derived from the region when read
    node["editStats"] = {{"detectSteps", r.stats.detect_steps},
                         {"attentionControlSteps", r.stats.attention_control_steps},
                         {"detectMs", r.stats.detect_ms},
                         {"sparseMs", r.stats.sparse_ms},
                         {"decodeMs", r.stats.decode_ms},
                         {"totalMs", r.stats.total_ms}};
  }
  return node;
}

// The document both shapes share; `addImages` puts each node's images in (file names or base64).
Json historyDocument(const QString& format, const ProjectContent& content,
                     const std::function<void(int, const HistoryRecord&, Json&)>& addImages) {
  Json nodes = Json::array();
  for (int i = 0; i < content.records.size(); ++i) {
    Json node = nodeJson(content.records[i], content);
    addImages(i, content.records[i], node);
    nodes.push_back(std::move(node));
  }
  return {{"format", format.toStdString()},
          {"version", kHistoryFormatVersion},
          {"model",
           {{"path", content.modelPath.toStdString()},
            {"family", content.modelFamily.toStdString()},
            {"fingerprint", content.modelFingerprint.toStdString()}}},
          {"nodes", std::move(nodes)}};
}

std::string pngBase64(const QImage& image) {
  QByteArray bytes;
  QBuffer buffer(&bytes);
  buffer.open(QIODevice::WriteOnly);
  image.save(&buffer, "PNG");
  return bytes.toBase64().toStdString();
}

// Null when the text is not a PNG.
QImage imageFromBase64(const Json& node, const char* key, QImage::Format format) {
  const Json* value = member(node, key);
  if (!value || !value->is_string()) return {};
  const auto decoded = QByteArray::fromBase64Encoding(QByteArray::fromStdString(value->get<std::string>()),
                                                      QByteArray::AbortOnBase64DecodingErrors);
  if (!decoded) return {};
  QImage image;
  if (!image.loadFromData(*decoded, "PNG")) return {};
  return image.convertToFormat(format);
}

// One node of a project file, or an error naming what is wrong with it.
QString readNode(const Json& node, const QHash<qint64, quint64>& ids, quint64 newId, const ModelIdentity& projectModel,
                 HistoryRecord& r) {
  const Json* id = member(node, "id");
  if (!id || !id->is_number_integer()) return QObject::tr("a node has no id");
  const qint64 fileId = id->get<std::int64_t>();
  r.id = newId;
  const Json* parent = member(node, "parent");
  if (!parent || !parent->is_null()) {
    // Parents come first in a file this program wrote: anything else is damage, not a format.
    const qint64 parentId = parent && parent->is_number_integer() ? parent->get<std::int64_t>() : -1;
    if (!ids.contains(parentId)) return QObject::tr("node %1 names an unknown parent").arg(fileId);
    r.parent = ids.value(parentId);
  }
  // The request's keys, strictly: a damaged one is reported, not read as zero.
  const std::string where = "node " + std::to_string(fileId);
  try {
    r.request = generation_request_from_json(node, where);
    if (r.parent) {
      const Json* edit = member(node, "edit");
      r.edit = edit_settings_from_json(edit ? *edit : Json::object(), where + "'s edit");
    }
  } catch (const Error& e) {
    return QString::fromUtf8(e.what());
  }
  r.device = text(node, "device");
  const Json& timings = object(node, "timings");
  r.timings = {number(timings, "textEncoderMs"), number(timings, "unetMs"), number(timings, "vaeMs"), number(timings, "totalMs")};
  r.totalMs = number(timings, "jobMs");
  r.image = imageFromBase64(node, "imagePng", QImage::Format_RGB888);
  if (r.image.isNull()) return QObject::tr("the image of node %1 cannot be read").arg(fileId);
  // An image-to-image node needs its starting image: without it the node would regenerate (and edit)
  // as text to image, another picture.
  if (member(node, "init_image")) {
    const QImage start = imageFromBase64(node, "initImagePng", QImage::Format_RGB888);
    if (start.isNull()) return QObject::tr("the starting image of node %1 (image to image) is missing or cannot be read").arg(fileId);
    r.request.init_image = toImage8(start);
  }
  if (r.parent) {
    r.edit.prompt = r.request.prompt;
    r.edit.negative_prompt = r.request.negative_prompt;
    const Json& stats = object(node, "editStats");
    r.stats.edit_fraction = number(node, "editFraction");
    r.stats.detect_steps = static_cast<int>(integer(stats, "detectSteps", 0));
    r.stats.attention_control_steps = static_cast<int>(integer(stats, "attentionControlSteps", 0));
    r.stats.detect_ms = number(stats, "detectMs");
    r.stats.sparse_ms = number(stats, "sparseMs");
    r.stats.decode_ms = number(stats, "decodeMs");
    r.stats.total_ms = number(stats, "totalMs");
    r.changedRegion = imageFromBase64(node, "maskPng", QImage::Format_Grayscale8);
    // Files written before painted masks were kept have none: such an edit stays view-only, since
    // its replay would re-render another region.
    if (member(node, "paintedMaskPng")) {
      const QImage painted = imageFromBase64(node, "paintedMaskPng", QImage::Format_Grayscale8);
      if (painted.isNull()) return QObject::tr("the painted mask of node %1 cannot be read").arg(fileId);
      r.edit.painted_mask = toImage8(painted);
    }
  }
  // Optional (files written before batches have none), but strict when there: a damaged tag would
  // group the wrong nodes for "Edit all in batch".
  if (const Json* batch = member(node, "batch"); batch && !batch->is_null()) {
    const Json* batchId = member(*batch, "id");
    const std::int64_t index = integer(*batch, "index", -1), size = integer(*batch, "size", -1);
    const bool idOk = batchId && batchId->is_number_unsigned() && batchId->get<std::uint64_t>() > 0 &&
                      batchId->get<std::uint64_t>() < (std::uint64_t{1} << 53);
    if (!idOk || size < 2 || size > kMaxBatchCount || index < 1 || index > size)
      return QObject::tr("node %1 has a damaged batch (id, index 1..size, size 2..%2)").arg(fileId).arg(kMaxBatchCount);
    r.batch = {batchId->get<std::uint64_t>(), static_cast<int>(index), static_cast<int>(size)};
  }
  r.model = projectModel;
  if (const Json* model = member(node, "model"); model && model->is_object())
    r.model = {text(*model, "path"), text(*model, "family"), text(*model, "fingerprint")};
  r.restored = true;
  return {};
}

}  // namespace

TextChunks imageTextChunks(const HistoryRecord& r) {
  const std::string modelName = QFileInfo(r.model.path).fileName().toStdString();
  Json json = to_json(r.request);  // the request's keys, as fisedit-cli writes them
  json["model"] = modelName;
  json["model_family"] = r.model.family.toStdString();
  json["model_fingerprint"] = r.model.fingerprint.toStdString();
  json["timings_ms"] = {{"text_encoder", r.timings.text_encoder_ms},
                        {"unet", r.timings.unet_ms},
                        {"vae", r.timings.vae_ms},
                        {"total", r.timings.total_ms}};
  if (!r.device.isEmpty()) json["device"] = r.device.toStdString();
  if (r.isEdit()) {
    json["edit_of"] = r.parentPrompt.toStdString();
    // The edit's settings, detect_steps resolved to the steps that ran (the request's -1 is 20% of
    // the steps), then what the edit measured: as fisedit-cli edit writes them.
    Json edit = edit_settings_to_json(r.edit);
    // changed_fraction is the figure the window shows as "N% re-rendered": the share of the image's
    // pixels the edit could change (the mask PNG's white); edit_fraction the share of latent cells
    // the model recomputed, as fisedit-cli writes it.
    edit.update(Json{{"changed_fraction", changedFraction(r)},
                     {"edit_fraction", r.stats.edit_fraction},
                     {"detect_steps", r.stats.detect_steps},
                     {"attention_control_steps", r.stats.attention_control_steps},
                     {"detect_ms", r.stats.detect_ms},
                     {"sparse_ms", r.stats.sparse_ms},
                     {"decode_ms", r.stats.decode_ms},
                     {"edit_ms", r.stats.total_ms}});
    json["edit"] = std::move(edit);
  }
  return {{"parameters", a1111_parameters(r.request, modelName)}, {"fisedit", dump(json)}};
}

QString nodeFileStem(int index) { return QStringLiteral("%1").arg(index + 1, 3, 10, QLatin1Char('0')); }

namespace {

// The staging folder of an export to `target` by this process: hidden, beside the target (so the final
// rename stays on one file system), "<.name>.export-<pid>-XXXXXX".
QString stagingTemplate(const QFileInfo& target) {
  return target.absolutePath() + QStringLiteral("/.%1.export-%2-XXXXXX").arg(target.fileName()).arg(::getpid());
}

// Removes the staging folders of exports to `target` whose process was killed mid-export (SIGKILL,
// power loss): those of a process id that no longer runs. A live process's export stays.
void removeStaleStagingFolders(const QFileInfo& target) {
  const QString prefix = QStringLiteral(".%1.export-").arg(target.fileName());
  const QDir parent(target.absolutePath());
  for (const QString& name : parent.entryList({prefix + QStringLiteral("*")}, QDir::Dirs | QDir::Hidden | QDir::NoDotAndDotDot)) {
    const QString rest = name.mid(prefix.size());  // "<pid>-XXXXXX"
    const int dash = rest.indexOf(QLatin1Char('-'));
    bool ok = false;
    const long pid = rest.left(dash).toLong(&ok);
    if (dash <= 0 || !ok || pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    const QFileInfo info(parent.filePath(name));
    if (info.isDir() && !info.isSymLink()) QDir(info.filePath()).removeRecursively();
  }
}

}  // namespace

QString exportHistory(const QString& folder, const ProjectContent& content) {
  const QFileInfo target(folder);
  if (target.exists() && !(target.isDir() && QDir(folder).isEmpty()))
    return QObject::tr("%1 already exists: choose a new folder name.").arg(folder);
  removeStaleStagingFolders(target);
  // A SIGKILL or crash before the rename leaves only this hidden folder (removed by the next export
  // to the same name), never a half-written export under the chosen name.
  QTemporaryDir staging(stagingTemplate(target));
  if (!staging.isValid()) return QObject::tr("Cannot create a folder in %1.").arg(target.absolutePath());
  try {
    const Json doc =
        historyDocument(kExportFormat, content, [&](int i, const HistoryRecord& r, Json& node) {
          const QString stem = nodeFileStem(i);
          const auto path = [&](const QString& name) { return std::filesystem::path(staging.filePath(name).toStdString()); };
          write_png(path(stem + QStringLiteral(".png")), toImage8(r.image), imageTextChunks(r));
          node["image"] = (stem + QStringLiteral(".png")).toStdString();
          if (r.isEdit() && !r.changedRegion.isNull()) {
            write_png(path(stem + QStringLiteral("-mask.png")), toImage8(r.changedRegion.convertToFormat(QImage::Format_Grayscale8)));
            node["mask"] = (stem + QStringLiteral("-mask.png")).toStdString();
          }
          if (const QImage painted = paintedMaskImage(r); !painted.isNull()) {
            write_png(path(stem + QStringLiteral("-painted.png")), toImage8(painted));
            node["paintedMask"] = (stem + QStringLiteral("-painted.png")).toStdString();
          }
        });
    // Every file is synced to disk (AtomicFile, as write_png) before the folder is renamed into place.
    const std::string text = dump(doc, 4);
    AtomicFile json(std::filesystem::path(staging.filePath(QStringLiteral("history.json")).toStdString()));
    json.write(reinterpret_cast<const std::byte*>(text.data()), text.size());
    json.commit();
  } catch (const Error& e) {
    return QString::fromUtf8(e.what());
  }
  // The staging folder is private (0700, as temporary folders are); the export gets the permissions a
  // folder the user made would have: 0777 less the umask.
  const mode_t mask = ::umask(0);
  ::umask(mask);
  if (::chmod(QFile::encodeName(staging.path()).constData(), 0777 & ~mask) != 0)
    return QObject::tr("Cannot set the permissions of %1.").arg(staging.path());
  if (target.exists()) QDir().rmdir(folder);  // the empty folder a dialog made; rename will not replace it
  if (!QDir().rename(staging.path(), folder)) return QObject::tr("Cannot rename the export to %1.").arg(folder);
  staging.setAutoRemove(false);
  sync_directory(std::filesystem::path(target.absolutePath().toStdString()));  // the rename, durable
  return {};
}

QString saveProject(const QString& path, const ProjectContent& content) {
  const Json doc = historyDocument(kProjectFormat, content, [](int, const HistoryRecord& r, Json& node) {
    node["imagePng"] = pngBase64(r.image);
    if (r.isEdit() && !r.changedRegion.isNull()) node["maskPng"] = pngBase64(r.changedRegion);
    if (const QImage painted = paintedMaskImage(r); !painted.isNull()) node["paintedMaskPng"] = pngBase64(painted);
    // Image to image: the starting image as the engine ran it (fitted to the node's size), so that the
    // node regenerates, and can be edited, after reopening.
    if (r.request.init_image) node["initImagePng"] = pngBase64(toQImage(*r.request.init_image));
  });
  // The old project stays whole until commit() renames the new one, synced to disk, over it; a process
  // killed before that leaves "<path>.tmp-<pid>" (not a .fisedit name), removed by the next save.
  try {
    const std::string text = dump(doc);
    // A project reached through a symbolic link is saved where the link points, as QSaveFile did
    // (AtomicFile itself refuses to replace a link).
    const QFileInfo info(path);
    AtomicFile file(std::filesystem::path((info.isSymLink() ? info.symLinkTarget() : path).toStdString()));
    file.write(reinterpret_cast<const std::byte*>(text.data()), text.size());
    file.commit();
  } catch (const Error& e) {
    return QObject::tr("Cannot save the project: %1").arg(QString::fromUtf8(e.what()));
  }
  return {};
}

ProjectReadResult loadProject(const QString& path) {
  ProjectReadResult result;
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly)) {
    result.error = QObject::tr("Cannot open %1: %2").arg(path, file.errorString());
    return result;
  }
  const QByteArray bytes = file.readAll();
  Json root;
  QString parseError;
  try {
    root = Json::parse(bytes.constData(), bytes.constData() + bytes.size());
  } catch (const Json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 9: ..." without the bracket. Not
    // only parse_error: a number too large for a double ("8E888") is out_of_range.406, which escaped
    // this catch and ended the app (found by tests/fuzz/fuzz_project).
    const std::string what = e.what();
    const auto bracket = what.find("] ");
    parseError = QString::fromStdString(bracket == std::string::npos ? what : what.substr(bracket + 2));
  }
  if (!parseError.isEmpty() || text(root, "format") != kProjectFormat) {
    result.error = QObject::tr("%1 is not a fisedit project (or it is damaged: %2).")
                       .arg(QFileInfo(path).fileName(), !parseError.isEmpty() ? parseError : QObject::tr("no project header"));
    return result;
  }
  const std::int64_t version = integer(root, "version", -1);
  if (version < kOldestHistoryFormatVersion || version > kHistoryFormatVersion) {
    result.error = QObject::tr("%1 is a version %2 project; this fisedit reads versions %3 to %4.")
                       .arg(QFileInfo(path).fileName()).arg(version).arg(kOldestHistoryFormatVersion).arg(kHistoryFormatVersion);
    return result;
  }
  const Json& model = object(root, "model");
  result.content.modelPath = text(model, "path");
  result.content.modelFamily = text(model, "family");
  result.content.modelFingerprint = text(model, "fingerprint");
  const ModelIdentity projectModel{result.content.modelPath, result.content.modelFamily, result.content.modelFingerprint};
  QHash<qint64, quint64> ids;  // file id -> restored id
  QHash<quint64, QString> prompts;
  const Json* nodes = member(root, "nodes");
  const std::size_t count = nodes && nodes->is_array() ? nodes->size() : 0;
  for (std::size_t i = 0; i < count; ++i) {
    HistoryRecord r;
    const Json& node = (*nodes)[i];
    const QString error = readNode(node, ids, kRestoredIdBase + static_cast<quint64>(i), projectModel, r);
    const qint64 fileId = integer(node, "id", -1);
    if (error.isEmpty() && ids.contains(fileId)) {
      result.error = QObject::tr("%1 is damaged: two nodes share an id.").arg(QFileInfo(path).fileName());
      return result;
    }
    if (!error.isEmpty()) {
      result.error = QObject::tr("%1 is damaged: %2.").arg(QFileInfo(path).fileName(), error);
      return result;
    }
    if (r.parent) r.parentPrompt = prompts.value(*r.parent);
    ids.insert(fileId, r.id);
    prompts.insert(r.id, QString::fromStdString(r.request.prompt));
    result.content.records.append(r);
  }
  return result;
}

}  // namespace fisedit::ui
