// GPU: the models and pipelines through the CUDA backend (fp16) against diffusers' goldens, within the
// fp16 tolerance the reference data supports (relative L2 <= 1e-2, never NaN or Inf): text encoder,
// U-Net (square CFG batch and non-square), VAE decoder and encoder, whole pipelines from given initial
// latents, seeded generation. Then the real architectures at full size with random weights: the SD2
// U-Net at 512x512 against the CPU backend, and a 768x768 SD2 U-Net call and VAE decode with finite output.
#include "gpu_test_main.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/device.h"
#include "core/torch_random.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "random_model/arch_presets.h"
#include "models/text_encoder.h"
#include "models/unet.h"
#include "models/vae.h"
#include "pipeline/generation.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>
#include <cstdio>

using namespace fisedit;

namespace {

constexpr double kTolerance = 1e-2;  // fp16 against float32 goldens (reference/README.md)

using test::relative_l2;

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

// Shapes equal, every value finite, relative L2 within the fp16 tolerance.
#define EXPECT_CLOSE(got, want, label)                                                                     \
  do {                                                                                                     \
    const Tensor got_ = (got), want_ = (want);                                                             \
    QCOMPARE(got_.shape(), want_.shape());                                                                 \
    const auto g_ = got_.to_f32();                                                                         \
    QVERIFY2(all_finite(g_), qPrintable(QString("%1: NaN or Inf").arg(label)));                            \
    const double err_ = relative_l2(g_, want_.to_f32());                                                   \
    qInfo("%s %s: relative L2 %.3g", qPrintable(QTest::currentDataTag()), label, err_);                     \
    QVERIFY2(err_ <= kTolerance, qPrintable(QString("%1: relative L2 %2").arg(label).arg(err_)));           \
  } while (0)

Tensor normal(Shape shape, std::uint64_t seed) {
  const auto n = shape_numel(shape);
  return Tensor::from_f32(std::move(shape), TorchGenerator(seed).randn(n));
}

}  // namespace

class TestCudaModels : public QObject {
  Q_OBJECT

  std::unique_ptr<CudaBackend> cuda_;

  static std::filesystem::path ref(const QString& model) { return test::reference_dir() / model.toStdString(); }
  static SafetensorsFile golden(const QString& model) { return SafetensorsFile::open(ref(model) / "golden.safetensors"); }

private slots:
  void initTestCase() {
    cuda_ = std::make_unique<CudaBackend>(0);
    qInfo("device: %s", cuda_->name().c_str());
    // What the CLI and the app get for --device auto on this machine.
    QCOMPARE(make_backend(DeviceChoice::automatic)->kind(), DeviceKind::cuda);
  }

  void models_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("tiny-sd2") << "tiny-sd2";
    QTest::newRow("tiny-sd15") << "tiny-sd15";
  }

  void text_encoder_data() { models_data(); }
  void text_encoder() {
    QFETCH(QString, model);
    const auto m = load_model(ref(model) / "model");
    const auto g = golden(model);
    const TextEncoder encoder(*cuda_, m.text_encoder, m.text_encoder_weights);
    EXPECT_CLOSE(encoder.encode(g.tensor("text_encoder.input_ids")), g.tensor("text_encoder.last_hidden_state"),
                 "text encoder");
  }

  void unet_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("prefix");
    for (const char* model : {"tiny-sd2", "tiny-sd15"})
      for (const char* prefix : {"unet", "unet_nonsquare"}) QTest::addRow("%s/%s", model, prefix) << model << prefix;
  }
  void unet() {
    QFETCH(QString, model);
    QFETCH(QString, prefix);
    const auto m = load_model(ref(model) / "model");
    const auto g = golden(model);
    const auto key = prefix.toStdString() + ".";
    UNet unet(*cuda_, m.unet, m.unet_weights);
    const auto out = unet.forward(g.tensor(key + "sample"), g.tensor(key + "timesteps").to_f32(), g.tensor(key + "context"));
    EXPECT_CLOSE(out, g.tensor(key + "out"), "U-Net");
  }

  void vae_data() { models_data(); }
  void vae() {
    QFETCH(QString, model);
    const auto m = load_model(ref(model) / "model");
    const auto g = golden(model);
    auto& b = *cuda_;
    const VaeDecoder decoder(b, m.vae, m.vae_weights);
    const auto z = b.nchw_to_nhwc(b.scale(b.upload(g.tensor("vae.latent_scaled")), 1.0f / m.vae.scaling_factor));
    EXPECT_CLOSE(b.download(b.nhwc_to_nchw(decoder.decode(z))), g.tensor("vae.image"), "VAE decoder");
    const VaeEncoder encoder(b, m.vae, m.vae_weights);
    const auto image = b.nchw_to_nhwc(b.upload(g.tensor("vae_encoder.image")));
    EXPECT_CLOSE(b.download(b.nhwc_to_nchw(encoder.encode_mean(image))), g.tensor("vae_encoder.mean"), "VAE encoder");
  }

  void pipelines_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("scheduler");
    for (const char* m : {"tiny-sd2", "tiny-sd15"})
      for (const char* s : {"ddim", "dpmpp2m"}) QTest::addRow("%s %s", m, s) << m << s;
  }
  void pipelines() {
    QFETCH(QString, model);
    QFETCH(QString, scheduler);
    const auto g = golden(model);
    const auto key = "pipeline." + scheduler.toStdString() + ".";
    const auto init = g.tensor(key + "init_latents");
    StableDiffusion sd(std::make_shared<LoadedModel>(load_model(ref(model) / "model")), *cuda_);
    GenerationRequest r{"a photo of a cat", "", 0, 10, 7.5f, scheduler.toStdString(),
                        static_cast<int>(init.dim(3)) * 8, static_cast<int>(init.dim(2)) * 8,
                        Tensor::from_f32(init.shape(), init.to_f32())};
    const auto result = sd.generate(r);
    EXPECT_CLOSE(result.latents, g.tensor(key + "final_latents"), "final latents");
    EXPECT_CLOSE(result.decoded, g.tensor(key + "image"), "image");
  }

  void seeded_data() { test::seeded_golden_rows(); }
  void seeded() {
    QFETCH(QString, scheduler);
    QFETCH(QString, prompt);
    QFETCH(QString, negative);
    QFETCH(int, seed);
    QFETCH(int, steps);
    QFETCH(float, cfg);
    QFETCH(int, width);
    QFETCH(int, height);
    const auto g = SafetensorsFile::open(test::reference_dir() / "seeded" / "golden.safetensors");
    const auto key = "seeded.tiny-sd2." + scheduler.toStdString() + ".";
    StableDiffusion sd(std::make_shared<LoadedModel>(load_model(ref("tiny-sd2") / "model")), *cuda_);
    GenerationRequest r{prompt.toStdString(), negative.toStdString(), static_cast<std::uint64_t>(seed), steps, cfg,
                        scheduler.toStdString(), width, height, std::nullopt};
    const auto result = sd.generate(r);
    EXPECT_CLOSE(result.latents, g.tensor(key + "latents"), "latents");
    // diffusers' image is [1, H, W, 3] in [0, 1]; ours is 8-bit RGB, H x W x 3.
    std::vector<float> pixels(result.image.pixels.begin(), result.image.pixels.end());
    for (auto& p : pixels) p /= 255.0f;
    const auto want = g.tensor(key + "image");
    EXPECT_CLOSE(Tensor::from_f32(want.shape(), pixels), want, "image");
  }

  // The SD 2.1 U-Net at full size (865M parameters, 64-wide heads, upcast attention, linear
  // projections), random weights, one CFG batch at 512x512: fp16 CUDA against the float32 CPU backend.
  void full_size_sd2_unet_matches_cpu() {
    const auto preset = arch_preset("sd2-512");
    const auto weights = random_weights(unet_weight_specs(preset.unet), 2);
    const auto sample = normal({2, 4, 64, 64}, 11), context = normal({2, 77, 1024}, 12);
    const std::vector<float> timesteps{981.0f, 261.0f};
    Tensor on_gpu;
    {
      UNet unet(*cuda_, preset.unet, weights);
      on_gpu = unet.forward(sample, timesteps, context);
    }
    CpuBackend cpu;
    UNet reference(cpu, preset.unet, weights);
    EXPECT_CLOSE(on_gpu, reference.forward(sample, timesteps, context), "sd2-512 U-Net, CUDA vs CPU");
  }

  // SD 2.1 at 768x768 (96x96 latents: 9,216 tokens per self-attention): no NaN or Inf through the
  // U-Net and the VAE decoder.
  void full_size_sd2_768_is_finite() {
    const auto preset = arch_preset("sd2-768");
    auto& b = *cuda_;
    {
      UNet unet(b, preset.unet, random_weights(unet_weight_specs(preset.unet), 3));
      const auto out = unet.forward(normal({2, 4, 96, 96}, 13), std::vector<float>{999.0f}, normal({2, 77, 1024}, 14));
      QCOMPARE(out.shape(), (Shape{2, 4, 96, 96}));
      QVERIFY2(all_finite(out.to_f32()), "U-Net output has NaN or Inf");
    }
    const VaeDecoder decoder(b, preset.vae, random_weights(vae_weight_specs(preset.vae), 4));
    const auto z = b.scale(b.nchw_to_nhwc(b.upload(normal({1, 4, 96, 96}, 15))), 1.0f / preset.vae.scaling_factor);
    const auto image = b.download(decoder.decode(z));
    QCOMPARE(image.shape(), (Shape{1, 768, 768, 3}));
    QVERIFY2(all_finite(image.to_f32()), "VAE output has NaN or Inf");
  }
};

FISEDIT_GPU_TEST_MAIN(TestCudaModels)

#include "test_cuda_models.moc"
