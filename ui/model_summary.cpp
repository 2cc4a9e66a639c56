#include "ui/model_summary.h"

#include "core/error.h"
#include "io/model_fingerprint.h"
#include "io/model_loader.h"

#include <algorithm>

namespace fisedit::ui {
namespace {

QString joined(const std::vector<int>& values) {
  QStringList parts;
  for (int v : values) parts << QString::number(v);
  return parts.join(QStringLiteral(", "));
}

QString unetHeadsText(const UNetConfig& unet) {
  // Head width (channels / heads) is what distinguishes SD2.x's 64-wide heads from SD1.x's fixed 8
  // heads, so show both.
  QStringList widths;
  for (std::size_t i = 0; i < unet.block_out_channels.size() && i < unet.num_attention_heads.size(); ++i)
    widths << QString::number(unet.block_out_channels[i] / std::max(1, unet.num_attention_heads[i]));
  return QStringLiteral("%1 (head width %2)").arg(joined(unet.num_attention_heads), widths.join(QStringLiteral(", ")));
}

}  // namespace

QString formatParameterCount(qint64 count) {
  if (count < 1'000'000) return QString::number(count);
  if (count < 1'000'000'000) return QString::number(static_cast<double>(count) / 1e6, 'f', 1) + QLatin1Char('M');
  return QString::number(static_cast<double>(count) / 1e9, 'f', 2) + QLatin1Char('B');
}

ModelSummary summarizeModel(const LoadedModel& model, const QString& configDir) {
  ModelSummary s;
  s.source = QString::fromStdString(model.source.string());
  s.configDir = configDir;
  s.singleFile = model.format == ModelFormat::single_file;
  s.family = QString::fromUtf8(family_name(model.family));
  s.fingerprint = QString::fromStdString(model_fingerprint(model));
  s.prediction = QString::fromUtf8(prediction_name(model.prediction()));
  s.format = QString::fromUtf8(format_name(model.format));
  s.scheduler = QStringLiteral("%1 (%2 spacing)")
                    .arg(QString::fromStdString(model.scheduler.class_name),
                         QString::fromStdString(model.scheduler.timestep_spacing));

  const auto& unet = model.unet;
  s.unetChannels = QStringLiteral("%1, %2 layers per block").arg(joined(unet.block_out_channels)).arg(unet.layers_per_block);
  s.unetHeads = unetHeadsText(unet);
  s.textEncoder = QStringLiteral("width %1, depth %2, %3 heads")
                      .arg(model.text_encoder.hidden_size)
                      .arg(model.text_encoder.num_hidden_layers)
                      .arg(model.text_encoder.num_attention_heads);
  s.vaeChannels = QStringLiteral("%1, latent %2").arg(joined(model.vae.block_out_channels)).arg(model.vae.latent_channels);
  s.imageSize = unet.sample_size * 8;
  s.defaultSize = QStringLiteral("%1 × %1").arg(s.imageSize);

  const auto unetParams = parameter_count(model.unet_weights);
  const auto vaeParams = parameter_count(model.vae_weights);
  const auto textParams = parameter_count(model.text_encoder_weights);
  s.parameters = QStringLiteral("U-Net %1 · VAE %2 · text %3 · total %4")
                     .arg(formatParameterCount(unetParams), formatParameterCount(vaeParams),
                          formatParameterCount(textParams), formatParameterCount(unetParams + vaeParams + textParams));
  const auto dtype = dtype_name(dominant_dtype(model.unet_weights));
  s.weightDtype = QString::fromUtf8(dtype.data(), static_cast<qsizetype>(dtype.size()));

  for (const auto& a : model.assumptions) s.assumptions << QString::fromStdString(a);

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
