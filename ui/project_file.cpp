#include "ui/project_file.h"

#include "core/error.h"
#include "io/image_file.h"

#include <QBuffer>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHash>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>
#include <QTemporaryDir>

#include <functional>

namespace fisedit::ui {
namespace {

const QString kExportFormat = QStringLiteral("fisedit-history");
const QString kProjectFormat = QStringLiteral("fisedit-project");

QString maskModeName(MaskMode mode) {
  switch (mode) {
    case MaskMode::painted: return QStringLiteral("painted");
    case MaskMode::intersect: return QStringLiteral("intersect");
    case MaskMode::automatic: break;
  }
  return QStringLiteral("automatic");
}

MaskMode maskModeFromName(const QString& name) {
  if (name == QLatin1String("painted")) return MaskMode::painted;
  if (name == QLatin1String("intersect")) return MaskMode::intersect;
  return MaskMode::automatic;
}

QString str(const std::string& text) { return QString::fromStdString(text); }

QImage paintedMaskImage(const HistoryRecord& r) {
  return r.isEdit() && r.edit.painted_mask ? toQImage(*r.edit.painted_mask).convertToFormat(QImage::Format_Grayscale8) : QImage();
}

QJsonObject nodeJson(const HistoryRecord& r, const ProjectContent& content) {
  QJsonObject node{
      {QStringLiteral("id"), static_cast<qint64>(r.id)},
      {QStringLiteral("parent"), r.parent ? QJsonValue(static_cast<qint64>(*r.parent)) : QJsonValue()},
      {QStringLiteral("prompt"), str(r.request.prompt)},
      {QStringLiteral("negativePrompt"), str(r.request.negative_prompt)},
      // Bit-cast through qint64: Qt 6 keeps JSON integers exact, where a double would round big seeds.
      {QStringLiteral("seed"), static_cast<qint64>(r.request.seed)},
      {QStringLiteral("steps"), r.request.steps},
      {QStringLiteral("cfgScale"), static_cast<double>(r.request.cfg_scale)},
      {QStringLiteral("scheduler"), str(r.request.scheduler)},
      {QStringLiteral("width"), r.request.width},
      {QStringLiteral("height"), r.request.height},
      {QStringLiteral("device"), r.device},
      {QStringLiteral("timings"), QJsonObject{{QStringLiteral("textEncoderMs"), r.timings.text_encoder_ms},
                                              {QStringLiteral("unetMs"), r.timings.unet_ms},
                                              {QStringLiteral("vaeMs"), r.timings.vae_ms},
                                              {QStringLiteral("totalMs"), r.timings.total_ms},
                                              {QStringLiteral("jobMs"), r.totalMs}}},
  };
  // Only where it is not the project's: a history that mixes models (a project opened view-only,
  // then images made with the open model).
  if (!r.model.path.isEmpty() && (r.model.path != content.modelPath || r.model.fingerprint != content.modelFingerprint))
    node.insert(QStringLiteral("model"), QJsonObject{{QStringLiteral("path"), r.model.path},
                                                     {QStringLiteral("family"), r.model.family},
                                                     {QStringLiteral("fingerprint"), r.model.fingerprint}});
  if (r.isEdit()) {
    node.insert(QStringLiteral("edit"), QJsonObject{{QStringLiteral("maskMode"), maskModeName(r.edit.mask_mode)},
                                                    {QStringLiteral("margin"), r.edit.margin},
                                                    {QStringLiteral("detectSteps"), r.edit.detect_steps},
                                                    {QStringLiteral("feather"), r.edit.feather},
                                                    {QStringLiteral("attentionControl"), r.edit.attention_control},
                                                    {QStringLiteral("wholeImageIfGlobal"), r.edit.whole_image_if_global}});
    node.insert(QStringLiteral("editFraction"), r.stats.edit_fraction);
    node.insert(QStringLiteral("editStats"), QJsonObject{{QStringLiteral("detectSteps"), r.stats.detect_steps},
                                                         {QStringLiteral("attentionControlSteps"), r.stats.attention_control_steps},
                                                         {QStringLiteral("detectMs"), r.stats.detect_ms},
                                                         {QStringLiteral("sparseMs"), r.stats.sparse_ms},
                                                         {QStringLiteral("decodeMs"), r.stats.decode_ms},
                                                         {QStringLiteral("totalMs"), r.stats.total_ms}});
  }
  return node;
}

// The document both shapes share; `addImages` puts each node's images in (file names or base64).
QJsonDocument historyDocument(const QString& format, const ProjectContent& content,
                              const std::function<void(int, const HistoryRecord&, QJsonObject&)>& addImages) {
  QJsonArray nodes;
  for (int i = 0; i < content.records.size(); ++i) {
    QJsonObject node = nodeJson(content.records[i], content);
    addImages(i, content.records[i], node);
    nodes.append(node);
  }
  return QJsonDocument(QJsonObject{{QStringLiteral("format"), format},
                                   {QStringLiteral("version"), kHistoryFormatVersion},
                                   {QStringLiteral("model"), QJsonObject{{QStringLiteral("path"), content.modelPath},
                                                                         {QStringLiteral("family"), content.modelFamily},
                                                                         {QStringLiteral("fingerprint"), content.modelFingerprint}}},
                                   {QStringLiteral("nodes"), nodes}});
}

QString pngBase64(const QImage& image) {
  QByteArray bytes;
  QBuffer buffer(&bytes);
  buffer.open(QIODevice::WriteOnly);
  image.save(&buffer, "PNG");
  return QString::fromLatin1(bytes.toBase64());
}

// Null when the text is not a PNG.
QImage imageFromBase64(const QJsonValue& value, QImage::Format format) {
  const auto decoded = QByteArray::fromBase64Encoding(value.toString().toLatin1(), QByteArray::AbortOnBase64DecodingErrors);
  if (!decoded) return {};
  QImage image;
  if (!image.loadFromData(*decoded, "PNG")) return {};
  return image.convertToFormat(format);
}

// One node of a project file, or an error naming what is wrong with it.
QString readNode(const QJsonObject& node, const QHash<qint64, quint64>& ids, quint64 newId, const ModelIdentity& projectModel,
                 HistoryRecord& r) {
  if (!node.value(QStringLiteral("id")).isDouble()) return QObject::tr("a node has no id");
  r.id = newId;
  const QJsonValue parent = node.value(QStringLiteral("parent"));
  if (!parent.isNull()) {
    // Parents come first in a file this program wrote: anything else is damage, not a format.
    if (!ids.contains(parent.toInteger(-1))) return QObject::tr("node %1 names an unknown parent").arg(node.value(QStringLiteral("id")).toInteger());
    r.parent = ids.value(parent.toInteger());
  }
  r.request.prompt = node.value(QStringLiteral("prompt")).toString().toStdString();
  r.request.negative_prompt = node.value(QStringLiteral("negativePrompt")).toString().toStdString();
  r.request.seed = static_cast<std::uint64_t>(node.value(QStringLiteral("seed")).toInteger());
  r.request.steps = node.value(QStringLiteral("steps")).toInt();
  r.request.cfg_scale = static_cast<float>(node.value(QStringLiteral("cfgScale")).toDouble());
  r.request.scheduler = node.value(QStringLiteral("scheduler")).toString().toStdString();
  r.request.width = node.value(QStringLiteral("width")).toInt();
  r.request.height = node.value(QStringLiteral("height")).toInt();
  r.device = node.value(QStringLiteral("device")).toString();
  const QJsonObject timings = node.value(QStringLiteral("timings")).toObject();
  r.timings = {timings.value(QStringLiteral("textEncoderMs")).toDouble(), timings.value(QStringLiteral("unetMs")).toDouble(),
               timings.value(QStringLiteral("vaeMs")).toDouble(), timings.value(QStringLiteral("totalMs")).toDouble()};
  r.totalMs = timings.value(QStringLiteral("jobMs")).toDouble();
  r.image = imageFromBase64(node.value(QStringLiteral("imagePng")), QImage::Format_RGB888);
  if (r.image.isNull()) return QObject::tr("the image of node %1 cannot be read").arg(node.value(QStringLiteral("id")).toInteger());
  if (r.parent) {
    const QJsonObject edit = node.value(QStringLiteral("edit")).toObject();
    r.edit.mask_mode = maskModeFromName(edit.value(QStringLiteral("maskMode")).toString());
    r.edit.margin = edit.value(QStringLiteral("margin")).toInt();
    r.edit.detect_steps = edit.value(QStringLiteral("detectSteps")).toInt(-1);
    r.edit.feather = edit.value(QStringLiteral("feather")).toInt(8);
    // Absent from files written before attention control: those edits ran without it.
    r.edit.attention_control = edit.value(QStringLiteral("attentionControl")).toBool(false);
    // Absent from files written before it existed: those edits kept the thresholded region.
    r.edit.whole_image_if_global = edit.value(QStringLiteral("wholeImageIfGlobal")).toBool(false);
    r.edit.prompt = r.request.prompt;
    r.edit.negative_prompt = r.request.negative_prompt;
    const QJsonObject stats = node.value(QStringLiteral("editStats")).toObject();
    r.stats.edit_fraction = node.value(QStringLiteral("editFraction")).toDouble();
    r.stats.detect_steps = stats.value(QStringLiteral("detectSteps")).toInt();
    r.stats.attention_control_steps = stats.value(QStringLiteral("attentionControlSteps")).toInt(0);
    r.stats.detect_ms = stats.value(QStringLiteral("detectMs")).toDouble();
    r.stats.sparse_ms = stats.value(QStringLiteral("sparseMs")).toDouble();
    r.stats.decode_ms = stats.value(QStringLiteral("decodeMs")).toDouble();
    r.stats.total_ms = stats.value(QStringLiteral("totalMs")).toDouble();
    r.changedRegion = imageFromBase64(node.value(QStringLiteral("maskPng")), QImage::Format_Grayscale8);
    // Files written before painted masks were kept have none: such an edit stays view-only, since
    // its replay would re-render another region.
    if (node.contains(QStringLiteral("paintedMaskPng"))) {
      const QImage painted = imageFromBase64(node.value(QStringLiteral("paintedMaskPng")), QImage::Format_Grayscale8);
      if (painted.isNull()) return QObject::tr("the painted mask of node %1 cannot be read").arg(node.value(QStringLiteral("id")).toInteger());
      r.edit.painted_mask = toImage8(painted);
    }
  }
  r.model = projectModel;
  if (node.value(QStringLiteral("model")).isObject()) {
    const QJsonObject model = node.value(QStringLiteral("model")).toObject();
    r.model = {model.value(QStringLiteral("path")).toString(), model.value(QStringLiteral("family")).toString(),
               model.value(QStringLiteral("fingerprint")).toString()};
  }
  r.restored = true;
  return {};
}

}  // namespace

TextChunks imageTextChunks(const HistoryRecord& r) {
  const std::string modelName = QFileInfo(r.model.path).fileName().toStdString();
  QJsonObject json{
      {QStringLiteral("prompt"), str(r.request.prompt)},
      {QStringLiteral("negative_prompt"), str(r.request.negative_prompt)},
      {QStringLiteral("seed"), static_cast<qint64>(r.request.seed)},
      {QStringLiteral("steps"), r.request.steps},
      {QStringLiteral("cfg_scale"), static_cast<double>(r.request.cfg_scale)},
      {QStringLiteral("scheduler"), str(r.request.scheduler)},
      {QStringLiteral("width"), r.request.width},
      {QStringLiteral("height"), r.request.height},
      {QStringLiteral("model"), str(modelName)},
      {QStringLiteral("model_family"), r.model.family},
      {QStringLiteral("model_fingerprint"), r.model.fingerprint},
      {QStringLiteral("timings_ms"), QJsonObject{{QStringLiteral("text_encoder"), r.timings.text_encoder_ms},
                                                 {QStringLiteral("unet"), r.timings.unet_ms},
                                                 {QStringLiteral("vae"), r.timings.vae_ms},
                                                 {QStringLiteral("total"), r.timings.total_ms}}},
  };
  if (!r.device.isEmpty()) json.insert(QStringLiteral("device"), r.device);
  if (r.isEdit()) {
    json.insert(QStringLiteral("edit_of"), r.parentPrompt);
    json.insert(QStringLiteral("edit"), QJsonObject{{QStringLiteral("mask_mode"), maskModeName(r.edit.mask_mode)},
                                                    {QStringLiteral("mask_margin"), r.edit.margin},
                                                    {QStringLiteral("feather"), r.edit.feather},
                                                    {QStringLiteral("edit_fraction"), r.stats.edit_fraction},
                                                    {QStringLiteral("detect_steps"), r.stats.detect_steps},
                                                    {QStringLiteral("attention_control"), r.edit.attention_control},
                                                    {QStringLiteral("whole_image_if_global"), r.edit.whole_image_if_global},
                                                    {QStringLiteral("attention_control_steps"), r.stats.attention_control_steps},
                                                    {QStringLiteral("detect_ms"), r.stats.detect_ms},
                                                    {QStringLiteral("sparse_ms"), r.stats.sparse_ms},
                                                    {QStringLiteral("decode_ms"), r.stats.decode_ms},
                                                    {QStringLiteral("edit_ms"), r.stats.total_ms}});
  }
  return {{"parameters", a1111_parameters(r.request, modelName)},
          {"fisedit", QJsonDocument(json).toJson(QJsonDocument::Compact).toStdString()}};
}

QString nodeFileStem(int index) { return QStringLiteral("%1").arg(index + 1, 3, 10, QLatin1Char('0')); }

QString exportHistory(const QString& folder, const ProjectContent& content) {
  const QFileInfo target(folder);
  if (target.exists() && !(target.isDir() && QDir(folder).isEmpty()))
    return QObject::tr("%1 already exists: choose a new folder name.").arg(folder);
  // Beside the target, so the final rename stays on one file system and is a single step.
  QTemporaryDir staging(target.absolutePath() + QStringLiteral("/.%1-XXXXXX").arg(target.fileName()));
  if (!staging.isValid()) return QObject::tr("Cannot create a folder in %1.").arg(target.absolutePath());
  try {
    const QJsonDocument doc =
        historyDocument(kExportFormat, content, [&](int i, const HistoryRecord& r, QJsonObject& node) {
          const QString stem = nodeFileStem(i);
          const auto path = [&](const QString& name) { return std::filesystem::path(staging.filePath(name).toStdString()); };
          write_png(path(stem + QStringLiteral(".png")), toImage8(r.image), imageTextChunks(r));
          node.insert(QStringLiteral("image"), stem + QStringLiteral(".png"));
          if (r.isEdit() && !r.changedRegion.isNull()) {
            write_png(path(stem + QStringLiteral("-mask.png")), toImage8(r.changedRegion.convertToFormat(QImage::Format_Grayscale8)));
            node.insert(QStringLiteral("mask"), stem + QStringLiteral("-mask.png"));
          }
          if (const QImage painted = paintedMaskImage(r); !painted.isNull()) {
            write_png(path(stem + QStringLiteral("-painted.png")), toImage8(painted));
            node.insert(QStringLiteral("paintedMask"), stem + QStringLiteral("-painted.png"));
          }
        });
    QFile json(staging.filePath(QStringLiteral("history.json")));
    if (!json.open(QIODevice::WriteOnly) || json.write(doc.toJson()) < 0 || !json.flush())
      return QObject::tr("Cannot write %1: %2").arg(json.fileName(), json.errorString());
  } catch (const Error& e) {
    return QString::fromUtf8(e.what());
  }
  if (target.exists()) QDir().rmdir(folder);  // the empty folder a dialog made; rename will not replace it
  if (!QDir().rename(staging.path(), folder)) return QObject::tr("Cannot rename the export to %1.").arg(folder);
  staging.setAutoRemove(false);
  return {};
}

QString saveProject(const QString& path, const ProjectContent& content) {
  const QJsonDocument doc = historyDocument(kProjectFormat, content, [](int, const HistoryRecord& r, QJsonObject& node) {
    node.insert(QStringLiteral("imagePng"), pngBase64(r.image));
    if (r.isEdit() && !r.changedRegion.isNull()) node.insert(QStringLiteral("maskPng"), pngBase64(r.changedRegion));
    if (const QImage painted = paintedMaskImage(r); !painted.isNull()) node.insert(QStringLiteral("paintedMaskPng"), pngBase64(painted));
  });
  QSaveFile file(path);  // the old project stays whole until commit() renames the new one over it
  if (!file.open(QIODevice::WriteOnly) || file.write(doc.toJson(QJsonDocument::Compact)) < 0 || !file.commit())
    return QObject::tr("Cannot write %1: %2").arg(path, file.errorString());
  return {};
}

ProjectReadResult loadProject(const QString& path) {
  ProjectReadResult result;
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly)) {
    result.error = QObject::tr("Cannot open %1: %2").arg(path, file.errorString());
    return result;
  }
  QJsonParseError parseError;
  const QJsonDocument doc = QJsonDocument::fromJson(file.readAll(), &parseError);
  const QJsonObject root = doc.object();
  if (doc.isNull() || root.value(QStringLiteral("format")).toString() != kProjectFormat) {
    result.error = QObject::tr("%1 is not a fisedit project (or it is damaged: %2).")
                       .arg(QFileInfo(path).fileName(), parseError.error ? parseError.errorString() : QObject::tr("no project header"));
    return result;
  }
  const int version = root.value(QStringLiteral("version")).toInt(-1);
  if (version != kHistoryFormatVersion) {
    result.error = QObject::tr("%1 is a version %2 project; this fisedit reads version %3.")
                       .arg(QFileInfo(path).fileName()).arg(version).arg(kHistoryFormatVersion);
    return result;
  }
  const QJsonObject model = root.value(QStringLiteral("model")).toObject();
  result.content.modelPath = model.value(QStringLiteral("path")).toString();
  result.content.modelFamily = model.value(QStringLiteral("family")).toString();
  result.content.modelFingerprint = model.value(QStringLiteral("fingerprint")).toString();
  const ModelIdentity projectModel{result.content.modelPath, result.content.modelFamily, result.content.modelFingerprint};
  QHash<qint64, quint64> ids;  // file id -> restored id
  QHash<quint64, QString> prompts;
  const QJsonArray nodes = root.value(QStringLiteral("nodes")).toArray();
  for (int i = 0; i < nodes.size(); ++i) {
    HistoryRecord r;
    const QJsonObject node = nodes[i].toObject();
    const QString error = readNode(node, ids, kRestoredIdBase + static_cast<quint64>(i), projectModel, r);
    if (error.isEmpty() && ids.contains(node.value(QStringLiteral("id")).toInteger())) {
      result.error = QObject::tr("%1 is damaged: two nodes share an id.").arg(QFileInfo(path).fileName());
      return result;
    }
    if (!error.isEmpty()) {
      result.error = QObject::tr("%1 is damaged: %2.").arg(QFileInfo(path).fileName(), error);
      return result;
    }
    if (r.parent) r.parentPrompt = prompts.value(*r.parent);
    ids.insert(node.value(QStringLiteral("id")).toInteger(), r.id);
    prompts.insert(r.id, QString::fromStdString(r.request.prompt));
    result.content.records.append(r);
  }
  return result;
}

}  // namespace fisedit::ui
