// torch-compatible noise against torch.randn goldens: both of torch's sampling paths (below and from
// 16 elements, with and without a ragged tail), seeds above 2^32, and a generator drawn from twice.
#include "core/error.h"
#include "core/torch_random.h"
#include "io/safetensors.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>
#include <string>

using namespace fisedit;

namespace {

SafetensorsFile goldens() {
  return SafetensorsFile::open(test::reference_dir() / "seeded" / "golden.safetensors");
}

// torch's vectorised log/sin/cos differ from libm by a few ulp on the >= 16 path.
void compare(const std::vector<float>& got, const std::vector<float>& want) {
  QCOMPARE(got.size(), want.size());
  double diff = 0, norm = 0, max_abs = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    diff += d * d;
    norm += static_cast<double>(want[i]) * want[i];
    max_abs = std::max(max_abs, std::abs(d));
  }
  const double rel = std::sqrt(diff / norm);
  QVERIFY2(rel <= 1e-6, qPrintable(QString("relative L2 error %1").arg(rel)));
  QVERIFY2(max_abs <= 1e-5, qPrintable(QString("max abs error %1").arg(max_abs)));
}

}  // namespace

class TestTorchRandom : public QObject {
  Q_OBJECT

private slots:
  void randn_golden_data() {
    QTest::addColumn<QString>("key");
    QTest::addColumn<quint64>("seed");
    int rows = 0;
    const SafetensorsFile file = goldens();
    for (const TensorInfo& info : file.tensors()) {
      // randn.seed<S>.<shape>; the two_draws keys have their own test.
      if (info.name.rfind("randn.seed", 0) != 0 || info.name.find("two_draws") != std::string::npos) continue;
      const std::string rest = info.name.substr(std::string("randn.seed").size());
      const quint64 seed = std::stoull(rest.substr(0, rest.find('.')));
      QTest::newRow(info.name.c_str()) << QString::fromStdString(info.name) << seed;
      ++rows;
    }
    QVERIFY2(rows >= 40, "the golden file lost its randn keys");
  }

  void randn_golden() {
    QFETCH(QString, key);
    QFETCH(quint64, seed);
    const Tensor want = goldens().tensor(key.toStdString());
    TorchGenerator generator(seed);
    compare(generator.randn(want.numel()), want.to_f32());
  }

  void successive_draws_continue_the_stream() {
    const SafetensorsFile file = goldens();
    const Tensor first = file.tensor("randn.seed5.two_draws.first");
    const Tensor second = file.tensor("randn.seed5.two_draws.second");
    TorchGenerator generator(5);
    compare(generator.randn(first.numel()), first.to_f32());
    compare(generator.randn(second.numel()), second.to_f32());
  }

  void small_draws_keep_the_spare_sample() {
    // The double path makes samples in pairs; an odd-length draw leaves the second of a pair in the
    // generator, as torch's does, so 7 + 8 values continue exactly like one draw of 15.
    const std::vector<float> want = goldens().tensor("randn.seed42.15").to_f32();
    TorchGenerator generator(42);
    std::vector<float> got = generator.randn(7);
    const std::vector<float> rest = generator.randn(8);
    got.insert(got.end(), rest.begin(), rest.end());
    compare(got, want);
  }

  void only_low_32_bits_of_the_seed_count() {
    // torch seeds its Mersenne Twister with seed mod 2^32: 2^32 + 5 draws what 5 draws.
    TorchGenerator high((std::uint64_t{1} << 32) + 5);
    TorchGenerator low(5);
    QVERIFY(high.randn(33) == low.randn(33));
  }

  void empty_and_negative_sizes() {
    TorchGenerator generator(0);
    QVERIFY(generator.randn(0).empty());
    try {
      generator.randn(-1);
      QFAIL("a negative size was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::invalid_argument);
    }
  }
};

QTEST_GUILESS_MAIN(TestTorchRandom)
#include "test_torch_random.moc"
