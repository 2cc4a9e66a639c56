// The CLIP / OpenCLIP text encoder on the CPU backend against transformers' last_hidden_state for the
// golden prompts (relative L2 <= 1e-4), from a diffusers folder and from a single-file checkpoint.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "models/text_encoder.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>

using namespace fisedit;

namespace {

using test::relative_l2;

}  // namespace

class TestTextEncoder : public QObject {
  Q_OBJECT

private slots:
  void models_data() {
    QTest::addColumn<QString>("name");
    QTest::newRow("tiny-sd2") << "tiny-sd2";
    QTest::newRow("tiny-sd15") << "tiny-sd15";
  }

  void matches_golden_data() { models_data(); }
  void matches_golden() {
    QFETCH(QString, name);
    const auto ref = test::reference_dir() / name.toStdString();
    const auto golden = SafetensorsFile::open(ref / "golden.safetensors");
    const auto ids = golden.tensor("text_encoder.input_ids");
    const auto want = golden.tensor("text_encoder.last_hidden_state");

    CpuBackend backend;
    const auto model = load_model(ref / "model");
    const TextEncoder encoder(backend, model.text_encoder, model.text_encoder_weights);
    const auto got = encoder.encode(ids);
    QCOMPARE(got.shape(), want.shape());
    const double err = relative_l2(got.to_f32(), want.to_f32());
    qInfo("%s text encoder: relative L2 error %.3g", qPrintable(name), err);
    QVERIFY2(err <= 1e-4, qPrintable(QString("relative L2 error %1").arg(err)));

    // A single file with the folder's configs holds the same weights: the same output, bit for bit.
    const auto single = load_model(ref / "single-file.safetensors", {.config_dir = ref / "model"});
    const TextEncoder single_encoder(backend, single.text_encoder, single.text_encoder_weights);
    QVERIFY(single_encoder.encode(ids).to_f32() == got.to_f32());
  }

  void shorter_sequences_and_bad_ids() {
    const auto ref = test::reference_dir() / "tiny-sd15";
    CpuBackend backend;
    const auto model = load_model(ref / "model");
    const TextEncoder encoder(backend, model.text_encoder, model.text_encoder_weights);
    // Causal attention: the first positions of a truncated sequence see exactly what they saw before.
    const std::vector<std::int64_t> ids = {49406, 320, 1125, 539, 320, 2368, 49407};
    const auto full = encoder.encode(Tensor::from_i64({1, 7}, ids)).to_f32();
    const auto head = encoder.encode(Tensor::from_i64({1, 3}, std::span(ids).first(3))).to_f32();
    const double err = relative_l2(head, std::vector<float>(full.begin(), full.begin() + 3 * 32));
    QVERIFY2(err <= 1e-6, qPrintable(QString("prefix differs by %1").arg(err)));

    const std::vector<std::int64_t> bad = {49406, 49408};
    QVERIFY_THROWS_EXCEPTION(Error, encoder.encode(Tensor::from_i64({1, 2}, bad)));
    const std::vector<std::int64_t> too_long(78, 320);
    QVERIFY_THROWS_EXCEPTION(Error, encoder.encode(Tensor::from_i64({1, 78}, too_long)));
  }

  void missing_weight_is_named() {
    const auto model = load_model(test::reference_dir() / "tiny-sd2" / "model");
    auto weights = model.text_encoder_weights;
    weights.erase("text_model.encoder.layers.5.mlp.fc2.bias");
    CpuBackend backend;
    try {
      TextEncoder encoder(backend, model.text_encoder, weights);
      QFAIL("no error for a missing weight");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::not_found);
      QVERIFY2(std::string(e.what()).find("text_model.encoder.layers.5.mlp.fc2.bias") != std::string::npos, e.what());
    }
  }
};

QTEST_GUILESS_MAIN(TestTextEncoder)
#include "test_text_encoder.moc"
