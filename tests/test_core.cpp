// Core types: half/bfloat16 conversion against exactly known values, tensor views.
#include "core/error.h"
#include "core/half.h"
#include "core/tensor.h"

#include <QtTest>

#include <cmath>
#include <limits>

using namespace fisedit;

class TestCore : public QObject {
  Q_OBJECT

private slots:
  void half_known_values_data() {
    QTest::addColumn<float>("value");
    QTest::addColumn<int>("bits");
    QTest::newRow("one") << 1.0f << 0x3c00;
    QTest::newRow("minus two") << -2.0f << 0xc000;
    QTest::newRow("max") << 65504.0f << 0x7bff;
    QTest::newRow("smallest normal") << 6.103515625e-05f << 0x0400;
    QTest::newRow("smallest subnormal") << 5.960464477539063e-08f << 0x0001;
    QTest::newRow("largest subnormal") << 6.097555160522461e-05f << 0x03ff;
    QTest::newRow("zero") << 0.0f << 0x0000;
    QTest::newRow("negative zero") << -0.0f << 0x8000;
    QTest::newRow("one third") << (1.0f / 3.0f) << 0x3555;
  }

  void half_known_values() {
    QFETCH(float, value);
    QFETCH(int, bits);
    QCOMPARE(int(float_to_half(value)), bits);
    QCOMPARE(half_to_float(static_cast<std::uint16_t>(bits)), value == 1.0f / 3.0f ? 0.333251953125f : value);
  }

  void half_rounding_and_limits() {
    QCOMPARE(int(float_to_half(65519.0f)), 0x7bff);  // below the rounding boundary
    QCOMPARE(int(float_to_half(65520.0f)), 0x7c00);  // rounds to infinity
    QCOMPARE(int(float_to_half(std::numeric_limits<float>::infinity())), 0x7c00);
    QVERIFY(std::isnan(half_to_float(float_to_half(std::numeric_limits<float>::quiet_NaN()))));
    QCOMPARE(int(float_to_half(1.0f + 1.0f / 2048)), 0x3c00);       // exact tie: to even
    QCOMPARE(int(float_to_half(1.0f + 3.0f / 2048)), 0x3c02);       // exact tie: to even (up)
    QCOMPARE(int(float_to_half(2.98023223876953125e-08f)), 0x0000);  // half the smallest subnormal: to even
    // Every finite half survives a round trip through float.
    for (int b = 0; b < 0x10000; ++b) {
      if ((b & 0x7c00) == 0x7c00) continue;
      QCOMPARE(int(float_to_half(half_to_float(static_cast<std::uint16_t>(b)))), b);
    }
  }

  void bf16() {
    QCOMPARE(bf16_to_float(0x3f80), 1.0f);
    QCOMPARE(int(float_to_bf16(1.0f)), 0x3f80);
    QCOMPARE(int(float_to_bf16(1.00390625f)), 0x3f80);  // tie rounds to even
    QCOMPARE(int(float_to_bf16(-3.0f)), 0xc040);
  }

  void tensor_views() {
    const std::vector<float> v = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const auto t = Tensor::from_f32({3, 4}, v);
    QCOMPARE(t.nbytes(), std::size_t{48});
    const auto rows = t.slice_rows(1, 3);
    QCOMPARE(rows.shape(), (Shape{2, 4}));
    QCOMPARE(rows.to_f32().front(), 4.0f);
    QCOMPARE(t.reshaped({12}).to_f32(), v);
    QVERIFY_THROWS_EXCEPTION(Error, t.reshaped({5}));
    QVERIFY_THROWS_EXCEPTION(Error, t.to_i64());
    QVERIFY_THROWS_EXCEPTION(Error, Tensor::from_f32({2}, v));
    QCOMPARE(shape_to_string({1, 4, 64, 64}), std::string("[1, 4, 64, 64]"));
  }
};

QTEST_GUILESS_MAIN(TestCore)
#include "test_core.moc"
