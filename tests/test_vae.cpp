// AutoencoderKL decoder and encoder on the CPU backend against diffusers (relative L2 <= 1e-4):
// vae.decode(latent_scaled / scaling_factor).sample and vae.encode(image).latent_dist.mean, both on
// non-square inputs for the decoder. Goldens are NCHW; the models run channels-last.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "models/vae.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>

using namespace fisedit;

namespace {

using test::relative_l2;

#define EXPECT_GOLDEN(got_tensor, want_tensor, label)                                       \
  do {                                                                                      \
    QCOMPARE((got_tensor).shape(), (want_tensor).shape());                                  \
    const double err_ = relative_l2((got_tensor).to_f32(), (want_tensor).to_f32());         \
    qInfo("%s %s: relative L2 error %.3g", qPrintable(name), label, err_);                  \
    QVERIFY2(err_ <= 1e-4, qPrintable(QString("relative L2 error %1").arg(err_)));          \
  } while (0)

}  // namespace

class TestVae : public QObject {
  Q_OBJECT

private slots:
  void models_data() {
    QTest::addColumn<QString>("name");
    QTest::newRow("tiny-sd2") << "tiny-sd2";
    QTest::newRow("tiny-sd15") << "tiny-sd15";
  }

  void decoder_matches_golden_data() { models_data(); }
  void decoder_matches_golden() {
    QFETCH(QString, name);
    const auto ref = test::reference_dir() / name.toStdString();
    const auto golden = SafetensorsFile::open(ref / "golden.safetensors");
    const auto model = load_model(ref / "model");
    CpuBackend backend;
    const VaeDecoder decoder(backend, model.vae, model.vae_weights);
    // [1, 4, 16, 24] -> [1, 3, 128, 192]
    const auto latents = backend.upload(golden.tensor("vae.latent_scaled"));
    const auto z = backend.nchw_to_nhwc(backend.scale(latents, 1.0f / model.vae.scaling_factor));
    const auto image = backend.download(backend.nhwc_to_nchw(decoder.decode(z)));
    EXPECT_GOLDEN(image, golden.tensor("vae.image"), "VAE decoder");
  }

  void encoder_matches_golden_data() { models_data(); }
  void encoder_matches_golden() {
    QFETCH(QString, name);
    const auto ref = test::reference_dir() / name.toStdString();
    const auto golden = SafetensorsFile::open(ref / "golden.safetensors");
    const auto model = load_model(ref / "model");
    CpuBackend backend;
    const VaeEncoder encoder(backend, model.vae, model.vae_weights);
    // [1, 3, 128, 128] -> [1, 4, 16, 16]
    const auto image = backend.nchw_to_nhwc(backend.upload(golden.tensor("vae_encoder.image")));
    const auto mean = backend.download(backend.nhwc_to_nchw(encoder.encode_mean(image)));
    EXPECT_GOLDEN(mean, golden.tensor("vae_encoder.mean"), "VAE encoder");
  }

  void missing_weight_is_named() {
    const auto model = load_model(test::reference_dir() / "tiny-sd15" / "model");
    CpuBackend backend;
    for (const std::string missing :
         {"decoder.up_blocks.1.upsamplers.0.conv.weight", "encoder.mid_block.attentions.0.to_k.bias"}) {
      auto weights = model.vae_weights;
      weights.erase(missing);
      try {
        if (missing.starts_with("decoder"))
          VaeDecoder(backend, model.vae, weights);
        else
          VaeEncoder(backend, model.vae, weights);
        QFAIL(("no error without " + missing).c_str());
      } catch (const Error& e) {
        QCOMPARE(e.code(), ErrorCode::not_found);
        QVERIFY2(std::string(e.what()).find(missing) != std::string::npos, e.what());
      }
    }
  }

  void bad_input_shapes() {
    const auto model = load_model(test::reference_dir() / "tiny-sd15" / "model");
    CpuBackend backend;
    const VaeDecoder decoder(backend, model.vae, model.vae_weights);
    QVERIFY_THROWS_EXCEPTION(Error, decoder.decode(backend.allocate({1, 4, 4, 3})));
    QVERIFY_THROWS_EXCEPTION(Error, decoder.decode(backend.allocate({4, 4, 4})));
  }
};

QTEST_GUILESS_MAIN(TestVae)
#include "test_vae.moc"
