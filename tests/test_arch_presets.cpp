// The built-in architectures of the real checkpoints and random models of them: the presets' configs;
// their weight lists against what diffusers itself wrote (the tiny reference folders have the same
// structure as the real models) and against the loader's checks, at full size without generating the
// 1.3 billion values; the random values' statistics and determinism; and small random models that
// build and run on the CPU backend, through a whole generation, without NaN or Inf.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/model_loader.h"
#include "io/model_loader_internal.h"
#include "random_model/arch_presets.h"
#include "models/text_encoder.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/generation.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>
#include <cstdlib>

using namespace fisedit;

namespace {

std::map<std::string, Shape> shapes_of(const std::vector<WeightSpec>& specs) {
  std::map<std::string, Shape> out;
  for (const auto& s : specs) out.emplace(s.name, s.shape);
  return out;
}

std::map<std::string, Shape> shapes_of(const WeightMap& weights) {
  std::map<std::string, Shape> out;
  for (const auto& [name, t] : weights) out.emplace(name, t.shape());
  return out;
}

// Names of `a` that `b` lacks or shapes differently, for a readable failure.
QString differences(const std::map<std::string, Shape>& a, const std::map<std::string, Shape>& b) {
  QStringList out;
  for (const auto& [name, shape] : a) {
    const auto it = b.find(name);
    if (it == b.end() || it->second != shape) out << QString::fromStdString(name + " " + shape_to_string(shape));
    if (out.size() > 5) break;
  }
  return out.join(", ");
}

// Tensors that only have shapes: views of one lazily-zeroed allocation (calloc maps zero pages that are
// never touched), enough for the loader's shape checks at full size.
WeightMap shape_only(const std::vector<WeightSpec>& specs) {
  std::size_t largest = 0;
  for (const auto& s : specs) largest = std::max(largest, static_cast<std::size_t>(shape_numel(s.shape)) * 2);
  std::shared_ptr<void> zeros(std::calloc(largest, 1), std::free);
  WeightMap out;
  for (const auto& s : specs) out.emplace(s.name, Tensor(DType::f16, s.shape, static_cast<const std::byte*>(zeros.get()), zeros));
  return out;
}

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

}  // namespace

class TestArchPresets : public QObject {
  Q_OBJECT

private slots:
  void real_configs() {
    const auto sd15 = arch_preset("sd15-512");
    QCOMPARE(sd15.family, ModelFamily::sd1);
    QCOMPARE(sd15.unet.block_out_channels, (std::vector<int>{320, 640, 1280, 1280}));
    QCOMPARE(sd15.unet.num_attention_heads, (std::vector<int>{8, 8, 8, 8}));
    QCOMPARE(sd15.unet.cross_attention_dim, 768);
    QVERIFY(!sd15.unet.use_linear_projection && !sd15.unet.upcast_attention);
    QCOMPARE(sd15.unet.sample_size, 64);
    QCOMPARE(sd15.text_encoder.num_hidden_layers, 12);
    QCOMPARE(sd15.text_encoder.hidden_size, 768);
    QCOMPARE(sd15.text_encoder.num_attention_heads, 12);
    QCOMPARE(sd15.text_encoder.intermediate_size, 3072);
    QCOMPARE(sd15.text_encoder.hidden_act, std::string("quick_gelu"));
    QCOMPARE(sd15.scheduler.prediction_type, PredictionType::epsilon);

    for (const char* name : {"sd2-512", "sd2-768"}) {
      const auto sd2 = arch_preset(name);
      const bool v = std::string(name) == "sd2-768";
      QCOMPARE(sd2.family, ModelFamily::sd2);
      QCOMPARE(sd2.unet.block_out_channels, (std::vector<int>{320, 640, 1280, 1280}));
      QCOMPARE(sd2.unet.num_attention_heads, (std::vector<int>{5, 10, 20, 20}));  // 64-wide heads
      QCOMPARE(sd2.unet.cross_attention_dim, 1024);
      QVERIFY(sd2.unet.use_linear_projection && sd2.unet.upcast_attention);
      QCOMPARE(sd2.unet.sample_size, v ? 96 : 64);
      QCOMPARE(sd2.text_encoder.num_hidden_layers, 23);
      QCOMPARE(sd2.text_encoder.hidden_size, 1024);
      QCOMPARE(sd2.text_encoder.num_attention_heads, 16);
      QCOMPARE(sd2.text_encoder.intermediate_size, 4096);
      QCOMPARE(sd2.text_encoder.hidden_act, std::string("gelu"));
      QCOMPARE(sd2.scheduler.prediction_type, v ? PredictionType::v_prediction : PredictionType::epsilon);
      QCOMPARE(sd2.scheduler.class_name, std::string("DDIMScheduler"));
      QCOMPARE(sd2.scheduler.beta_schedule, std::string("scaled_linear"));
      QCOMPARE(sd2.scheduler.beta_start, 0.00085f);
      QCOMPARE(sd2.scheduler.beta_end, 0.012f);
      QCOMPARE(sd2.scheduler.timestep_spacing, std::string("leading"));
      QCOMPARE(sd2.scheduler.steps_offset, 1);
    }
    for (const auto& name : arch_preset_names()) {
      const auto p = arch_preset(name);
      QCOMPARE(p.vae.latent_channels, 4);
      if (name == "toyworld") continue;  // its own VAE: checked against its folder below
      QCOMPARE(p.vae.scaling_factor, 0.18215f);
      QCOMPARE(p.vae.layers_per_block, 2);
    }
    QCOMPARE(arch_preset("sd2-768").vae.block_out_channels, (std::vector<int>{128, 256, 512, 512}));
    QVERIFY_THROWS_EXCEPTION(Error, arch_preset("sdxl"));
  }

  // The published parameter counts of the real checkpoints.
  void full_size_parameter_counts() {
    const auto count = [](const std::vector<WeightSpec>& specs) {
      std::int64_t n = 0;
      for (const auto& s : specs) n += shape_numel(s.shape);
      return n;
    };
    QCOMPARE(count(unet_weight_specs(arch_preset("sd15-512").unet)), std::int64_t{859520964});
    QCOMPARE(count(unet_weight_specs(arch_preset("sd2-768").unet)), std::int64_t{865910724});
    QCOMPARE(count(vae_weight_specs(arch_preset("sd2-768").vae)), std::int64_t{83653863});
    QCOMPARE(count(text_encoder_weight_specs(arch_preset("sd15-512").text_encoder)), std::int64_t{123060480});
    QCOMPARE(count(text_encoder_weight_specs(arch_preset("sd2-512").text_encoder)), std::int64_t{340387840});
  }

  void full_size_weights_pass_the_loader_checks_data() {
    QTest::addColumn<QString>("preset");
    for (const char* p : {"sd15-512", "sd2-512", "sd2-768"}) QTest::newRow(p) << p;
  }
  void full_size_weights_pass_the_loader_checks() {
    QFETCH(QString, preset);
    const auto p = arch_preset(preset.toStdString());
    LoadedModel m;
    m.unet = p.unet;
    m.vae = p.vae;
    m.text_encoder = p.text_encoder;
    m.unet_weights = shape_only(unet_weight_specs(p.unet));
    m.vae_weights = shape_only(vae_weight_specs(p.vae));
    m.text_encoder_weights = shape_only(text_encoder_weight_specs(p.text_encoder));
    detail::check_weights_match_configs(m, "preset " + p.name);
  }

  // The tiny reference folders, written by diffusers and transformers, have the real models' structure:
  // the generator must produce exactly their tensors, and the tiny presets exactly their configs.
  // The reference tiny models, and the built-in toy-world model, whose preset must describe the
  // shipped folder (the benchmark's random-weight runs of "toyworld" cost what the real model costs).
  void same_weights_as_the_reference_folders_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("folder");
    QTest::newRow("tiny-sd2") << "tiny-sd2" << QString::fromStdString((test::reference_dir() / "tiny-sd2/model").string());
    QTest::newRow("tiny-sd15") << "tiny-sd15" << QString::fromStdString((test::reference_dir() / "tiny-sd15/model").string());
    QTest::newRow("toyworld") << "toyworld" << QStringLiteral(FISEDIT_TOYWORLD_MODEL_DIR);
  }
  void same_weights_as_the_reference_folders() {
    QFETCH(QString, name);
    QFETCH(QString, folder);
    const auto ref = load_model(folder.toStdString());
    const auto preset = arch_preset(name.toStdString());
    for (const auto& [specs, weights] : {std::pair{unet_weight_specs(ref.unet), &ref.unet_weights},
                                         std::pair{vae_weight_specs(ref.vae), &ref.vae_weights},
                                         std::pair{text_encoder_weight_specs(ref.text_encoder), &ref.text_encoder_weights}}) {
      const auto generated = shapes_of(specs), loaded = shapes_of(*weights);
      QCOMPARE(generated.size(), specs.size());  // no name twice
      QVERIFY2(generated == loaded, qPrintable("generated but not in the folder: " + differences(generated, loaded) +
                                               "; in the folder but not generated: " + differences(loaded, generated)));
    }
    QCOMPARE(preset.unet.block_out_channels, ref.unet.block_out_channels);
    QCOMPARE(preset.unet.num_attention_heads, ref.unet.num_attention_heads);
    QCOMPARE(preset.unet.use_linear_projection, ref.unet.use_linear_projection);
    QCOMPARE(preset.unet.upcast_attention, ref.unet.upcast_attention);
    QCOMPARE(preset.unet.cross_attention_dim, ref.unet.cross_attention_dim);
    QCOMPARE(preset.unet.sample_size, ref.unet.sample_size);
    QCOMPARE(preset.unet.layers_per_block, ref.unet.layers_per_block);
    QCOMPARE(preset.unet.norm_num_groups, ref.unet.norm_num_groups);
    QCOMPARE(preset.unet.down_block_types, ref.unet.down_block_types);
    QCOMPARE(preset.unet.up_block_types, ref.unet.up_block_types);
    QCOMPARE(preset.vae.block_out_channels, ref.vae.block_out_channels);
    QCOMPARE(preset.vae.layers_per_block, ref.vae.layers_per_block);
    QCOMPARE(preset.vae.norm_num_groups, ref.vae.norm_num_groups);
    QCOMPARE(preset.vae.scaling_factor, ref.vae.scaling_factor);
    QCOMPARE(preset.text_encoder.hidden_size, ref.text_encoder.hidden_size);
    QCOMPARE(preset.text_encoder.num_attention_heads, ref.text_encoder.num_attention_heads);
    QCOMPARE(preset.text_encoder.num_hidden_layers, ref.text_encoder.num_hidden_layers);
    QCOMPARE(preset.text_encoder.hidden_act, ref.text_encoder.hidden_act);
    QCOMPARE(preset.scheduler.prediction_type, ref.scheduler.prediction_type);
    QCOMPARE(preset.family, ref.family);
  }

  void random_values() {
    const std::vector<WeightSpec> specs = {{"w.weight", {256, 64, 3, 3}, WeightInit::fan_in, 1.0f},
                                           {"e.weight", {1000, 64}, WeightInit::embedding, 1.0f},
                                           {"n.weight", {64}, WeightInit::ones, 1.0f},
                                           {"n.bias", {64}, WeightInit::zeros, 1.0f}};
    const auto a = random_weights(specs, 7, 1), b = random_weights(specs, 7, 3), c = random_weights(specs, 8, 2);
    for (const auto& s : specs) {
      QCOMPARE(a.at(s.name).dtype(), DType::f16);
      QVERIFY(a.at(s.name).to_f32() == b.at(s.name).to_f32());  // threads do not change the values
    }
    QVERIFY(a.at("w.weight").to_f32() != c.at("w.weight").to_f32());
    const auto check = [](const std::vector<float>& v, double want_std) {
      double sum = 0, sq = 0, peak = 0;
      for (float x : v) sum += x, sq += double(x) * x, peak = std::max(peak, double(std::abs(x)));
      const double mean = sum / v.size(), sd = std::sqrt(sq / v.size() - mean * mean);
      QVERIFY2(std::abs(mean) < 0.02 * want_std && std::abs(sd / want_std - 1) < 0.02,
               qPrintable(QString("mean %1 std %2, want std %3").arg(mean).arg(sd).arg(want_std)));
      QVERIFY(peak <= 4.4 * want_std && peak >= 3.5 * want_std);  // tails cut at 4.3 sigma
    };
    check(a.at("w.weight").to_f32(), 1.0 / std::sqrt(64.0 * 9));
    check(a.at("e.weight").to_f32(), 0.02);
    for (float x : a.at("n.weight").to_f32()) QCOMPARE(x, 1.0f);
    for (float x : a.at("n.bias").to_f32()) QCOMPARE(x, 0.0f);
  }

  // Small random models build on the CPU backend (every name and shape the constructors ask for is
  // there) and give finite outputs. One is a scaled-down SD2 with other channel and head counts.
  void random_models_run_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<bool>("scaled");
    QTest::newRow("tiny-sd2") << "tiny-sd2" << false;
    QTest::newRow("tiny-sd15") << "tiny-sd15" << false;
    QTest::newRow("scaled-down sd2") << "sd2-768" << true;
  }
  void random_models_run() {
    QFETCH(QString, name);
    QFETCH(bool, scaled);
    auto preset = arch_preset(name.toStdString());
    if (scaled) {
      preset.unet.block_out_channels = {32, 64, 96, 96};
      preset.unet.num_attention_heads = {2, 4, 6, 6};  // 16-wide heads
      preset.unet.cross_attention_dim = 48;
      preset.unet.sample_size = 8;
      preset.text_encoder.hidden_size = 48;
      preset.text_encoder.intermediate_size = 96;
      preset.text_encoder.num_hidden_layers = 3;
      preset.text_encoder.num_attention_heads = 3;
      preset.text_encoder.hidden_act = "gelu";
      preset.vae.block_out_channels = {32, 32, 64, 64};
    }
    const auto model = std::make_shared<LoadedModel>(
        random_model(preset, {.seed = 1, .tokenizer_dir = test::reference_dir() / "tiny-sd2" / "model" / "tokenizer"}));
    CpuBackend backend;
    {
      const VaeEncoder encoder(backend, model->vae, model->vae_weights);
      std::vector<float> image(1 * 64 * 64 * 3);
      for (std::size_t i = 0; i < image.size(); ++i) image[i] = std::sin(0.01f * float(i));
      const auto mean = backend.download(encoder.encode_mean(backend.upload(Tensor::from_f32({1, 64, 64, 3}, image))));
      QVERIFY(all_finite(mean.to_f32()));
    }
    // A whole generation with guidance: text encoder, U-Net, sampler and VAE decoder, 20 steps.
    StableDiffusion sd(model, backend);
    GenerationRequest r{"a photo of a cat", "blurry", 3, 20, 7.5f, "dpmpp2m", 64, 64, std::nullopt};
    const auto result = sd.generate(r);
    const auto latents = result.latents.to_f32();
    QVERIFY(all_finite(latents));
    QVERIFY(all_finite(result.decoded.to_f32()));
    double sq = 0;
    for (float x : latents) sq += double(x) * x;
    const double rms = std::sqrt(sq / latents.size());
    qInfo("%s: final latents rms %.3g", qPrintable(QTest::currentDataTag()), rms);
    QVERIFY2(rms > 1e-3 && rms < 100, qPrintable(QString("latents rms %1").arg(rms)));
  }
};

QTEST_GUILESS_MAIN(TestArchPresets)
#include "test_arch_presets.moc"
