// The model fingerprint a project records: the same model gives the same one wherever its files are,
// and a different model (other weights, another noise schedule) a different one.
#include "io/model_fingerprint.h"
#include "test_support.h"

#include <QtTest>

using namespace fisedit;
namespace fs = std::filesystem;

class TestModelFingerprint : public QObject {
  Q_OBJECT

  fs::path sd2_ = test::reference_dir() / "tiny-sd2" / "model";

private slots:
  void same_files_anywhere_give_the_same_fingerprint() {
    const std::string a = model_fingerprint(load_model(sd2_));
    QCOMPARE(a.size(), std::size_t{16});
    QVERIFY(a.find_first_not_of("0123456789abcdef") == std::string::npos);
    QCOMPARE(model_fingerprint(load_model(sd2_)), a);
    const test::TempDir dir;
    fs::create_directory_symlink(sd2_, dir / "moved");
    QCOMPARE(model_fingerprint(load_model(dir / "moved")), a);
  }

  void other_models_differ() {
    const LoadedModel sd2 = load_model(sd2_);
    const std::string a = model_fingerprint(sd2);
    QVERIFY(model_fingerprint(load_model(test::reference_dir() / "tiny-sd15" / "model")) != a);

    // One weight changed (its first byte, where a fine-tune or another seed would differ too).
    LoadedModel tuned = sd2;
    Tensor& tensor = tuned.unet_weights.begin()->second;
    const auto bytes = tensor.bytes();
    auto copy = std::make_shared<std::vector<std::byte>>(bytes.begin(), bytes.end());
    copy->front() ^= std::byte{1};
    tensor = Tensor(tensor.dtype(), tensor.shape(), copy->data(), copy);
    QVERIFY(model_fingerprint(tuned) != a);

    LoadedModel v = sd2;
    v.scheduler.prediction_type = v.scheduler.prediction_type == PredictionType::epsilon ? PredictionType::v_prediction
                                                                                         : PredictionType::epsilon;
    QVERIFY(model_fingerprint(v) != a);
  }
};

QTEST_GUILESS_MAIN(TestModelFingerprint)
#include "test_model_fingerprint.moc"
