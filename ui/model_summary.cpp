// A loaded model's display-ready summary (model_summary.h), made on the worker thread.
#include "ui/model_summary.h"

#include "core/error.h"
#include "io/model_description.h"
#include "io/model_loader.h"

namespace fisedit::ui {
namespace {

QString qs(const std::string& text) { return QString::fromStdString(text); }

}  // namespace

QString formatParameterCount(qint64 count) { return qs(format_parameter_count(count)); }

ModelSummary summarizeModel(const LoadedModel& model, const QString& configDir) {
  const ModelDescription d = describe_model(model);
  ModelSummary s;
  s.source = qs(d.source);
  s.configDir = configDir;
  s.singleFile = model.format == ModelFormat::single_file;
  s.family = qs(d.family);
  s.fingerprint = qs(d.fingerprint);
  s.prediction = qs(d.prediction);
  s.format = qs(d.format);
  s.scheduler = qs(d.scheduler);
  s.unetChannels = qs(d.unet_channels);
  s.unetHeads = qs(d.unet_heads);
  s.textEncoder = qs(d.text_encoder);
  s.vaeChannels = qs(d.vae);
  s.imageSize = d.image_size;
  s.defaultSize = QStringLiteral("%1 × %1").arg(s.imageSize);
  s.parameters = QStringLiteral("U-Net %1 · VAE %2 · text %3 · total %4")
                     .arg(formatParameterCount(d.unet_parameters), formatParameterCount(d.vae_parameters),
                          formatParameterCount(d.text_encoder_parameters), formatParameterCount(d.total_parameters()));
  s.weightDtype = qs(d.weight_dtype);

  for (const auto& a : d.assumptions) s.assumptions << qs(a);

  if (!model.tokenizer_dir) {
    s.tokenizerNote = QStringLiteral("This single-file checkpoint carries no tokenizer. Choose a config folder "
                                     "(a diffusers folder of the same family) to count tokens.");
  } else {
    try {
      s.tokenizer = ClipTokenizer::from_folder(*model.tokenizer_dir);
    } catch (const Error& e) {
      s.tokenizerNote = QStringLiteral("The tokenizer could not be loaded: %1").arg(QString::fromUtf8(e.what()));
    }
  }
  return s;
}

}  // namespace fisedit::ui
