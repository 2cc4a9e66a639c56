// GPU: every CUDA backend op except the GEMM family (linear, conv2d, attention: test_cuda_gemm.cpp)
// against the CPU backend on the same random inputs, odd sizes and batch 2. Inputs are values fp16
// represents exactly, so both backends start from identical data: data movement must then match
// bit for bit, arithmetic within relative L2 1e-2 (and every element within 1e-2 (1 + |want|), so a
// few wrong elements cannot hide in a large tensor). Also: transfers, the memory pool, and
// out-of-memory errors that leave the backend usable.
#include "gpu_test_main.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_memory.h"
#include "core/error.h"
#include "core/half.h"
#include "test_support.h"

#include <QtTest>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>

using namespace fisedit;
using Values = std::vector<float>;

namespace {

constexpr double kTolerance = 1e-2;  // fp16 storage
constexpr double kExact = 0.0;

// Uniform in [offset - scale, offset + scale], rounded to fp16.
using test::half_random;

Shape to_shape(const QList<qint64>& list) { return Shape(list.begin(), list.end()); }

QString coordinates(const Shape& shape, std::int64_t index) {
  QStringList parts;
  for (auto d = shape.rbegin(); d != shape.rend(); ++d) {
    parts.prepend(QString::number(*d ? index % *d : 0));
    index = *d ? index / *d : 0;
  }
  return "[" + parts.join(", ") + "]";
}

// Empty when `got` matches `want` (exactly when tolerance is 0); otherwise what is wrong and where.
QString compare(const Tensor& got, const Tensor& want, double tolerance) {
  if (got.shape() != want.shape())
    return QString("shape %1, expected %2")
        .arg(QString::fromStdString(shape_to_string(got.shape())), QString::fromStdString(shape_to_string(want.shape())));
  const Values g = got.to_f32(), w = want.to_f32();
  double diff2 = 0, norm2 = 0, largest = 0;
  std::int64_t bad = 0, first_bad = -1, largest_at = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double d = g[i] == w[i] ? 0.0 : std::abs(double(g[i]) - w[i]);
    // Equal values pass outright: with an exact tolerance, 0 * (1 + inf) would be NaN for infinities.
    const bool ok = g[i] == w[i] || (std::isfinite(d) && d <= tolerance * (1.0 + std::abs(double(w[i]))));
    if (!ok && bad++ == 0) first_bad = static_cast<std::int64_t>(i);
    if (std::isfinite(d)) diff2 += d * d;
    norm2 += double(w[i]) * w[i];
    if (d > largest) largest = d, largest_at = static_cast<std::int64_t>(i);
  }
  const double relative = std::sqrt(diff2 / std::max(norm2, 1e-30));
  if (bad == 0 && relative <= tolerance) return {};
  QString message = QString("relative L2 error %1 (limit %2); largest difference %3 at %4; %5 of %6 elements off")
                        .arg(relative)
                        .arg(tolerance)
                        .arg(largest)
                        .arg(coordinates(want.shape(), largest_at))
                        .arg(bad)
                        .arg(w.size());
  if (first_bad >= 0)
    message += QString(", first at %1: got %2, expected %3")
                   .arg(coordinates(want.shape(), first_bad))
                   .arg(double(g[first_bad]), 0, 'g', 9)
                   .arg(double(w[first_bad]), 0, 'g', 9);
  return message;
}

Tensor host_tensor(DType dtype, Shape shape, std::vector<std::uint16_t> bits) {
  auto owner = std::make_shared<std::vector<std::uint16_t>>(std::move(bits));
  return Tensor(dtype, std::move(shape), reinterpret_cast<const std::byte*>(owner->data()), owner);
}

}  // namespace

// `op` uploads its inputs to the backend it is given, runs the op there and downloads the result.
#define EXPECT_SAME_RESULT(op, tolerance)                                      \
  do {                                                                         \
    const QString mismatch_ = compare((op)(*gpu), (op)(cpu), tolerance);      \
    QVERIFY2(mismatch_.isEmpty(), qPrintable("CUDA vs CPU: " + mismatch_));    \
  } while (0)

#define EXPECT_ERROR_CODE(statement, expected_code)                                                   \
  do {                                                                                                \
    QString got_ = "no error";                                                                        \
    try {                                                                                             \
      statement;                                                                                      \
    } catch (const Error& e) {                                                                        \
      got_ = e.code() == (expected_code) ? QString()                                                  \
                                         : QString("Error(%1): %2").arg(error_code_name(e.code()), e.what()); \
    }                                                                                                 \
    QVERIFY2(got_.isEmpty(), qPrintable("expected Error(" + QString(error_code_name(expected_code)) + \
                                        ") from " #statement ", got " + got_));                       \
  } while (0)

Q_DECLARE_METATYPE(Activation)
Q_DECLARE_METATYPE(DType)

class TestCudaOps : public QObject {
  Q_OBJECT
  std::unique_ptr<CudaBackend> gpu;
  CpuBackend cpu;

  using Op = std::function<Tensor(Backend&)>;

  // A quick op on fresh data, to show the backend still works after an error.
  void expect_backend_usable() {
    const Tensor x = Tensor::from_f32({2, 33}, half_random(66, 99));
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.scale(b.upload(x), 0.5f)); }), kTolerance);
    QCOMPARE(cudaGetLastError(), cudaSuccess);
  }

private slots:
  void initTestCase() {
    try {
      gpu = std::make_unique<CudaBackend>(0);
    } catch (const Error& e) {
      QFAIL(qPrintable(QString("CudaBackend(0) failed: ") + e.what()));
    }
    std::printf("device: %s\n", gpu->name().c_str());
    QVERIFY(QString::fromStdString(gpu->name()).endsWith(" (CUDA, float16)"));
    QCOMPARE(gpu->activation_dtype(), DType::f16);
    std::string why = "unchanged";
    QVERIFY(CudaBackend::device_available(&why));
    QVERIFY2(why == "unchanged", why.c_str());
  }

  // Host F32 / F16 / BF16 / F64 -> device fp16 -> host float: exactly the host's fp16 rounding.
  void upload_download_round_trip_data() {
    QTest::addColumn<DType>("dtype");
    QTest::newRow("F32") << DType::f32;
    QTest::newRow("F16") << DType::f16;
    QTest::newRow("BF16") << DType::bf16;
    QTest::newRow("F64") << DType::f64;
  }
  void upload_download_round_trip() {
    QFETCH(DType, dtype);
    std::mt19937 rng(1);
    std::normal_distribution<float> mantissa;
    std::uniform_real_distribution<float> exponent(-26.0f, 15.0f);
    Values v = {0.0f, -0.0f, 65504.0f, -65504.0f, 6e-8f, 1.00048828125f};
    while (v.size() < 1001) v.push_back(mantissa(rng) * std::exp2(exponent(rng)));  // odd size
    Tensor host;
    Values want;
    std::vector<std::uint16_t> bits;
    if (dtype == DType::f32) {
      host = Tensor::from_f32({7, 143}, v);
      for (float x : v) want.push_back(half_to_float(float_to_half(x)));
    } else if (dtype == DType::f16) {
      for (float x : v) bits.push_back(float_to_half(x)), want.push_back(half_to_float(bits.back()));
      host = host_tensor(DType::f16, {7, 143}, bits);
    } else if (dtype == DType::bf16) {
      for (float x : v) bits.push_back(float_to_bf16(x)), want.push_back(half_to_float(float_to_half(bf16_to_float(bits.back()))));
      host = host_tensor(DType::bf16, {7, 143}, bits);
    } else {
      auto owner = std::make_shared<std::vector<double>>(v.begin(), v.end());
      host = Tensor(DType::f64, {7, 143}, reinterpret_cast<const std::byte*>(owner->data()), owner);
      for (float x : v) want.push_back(half_to_float(float_to_half(x)));
    }
    const DeviceTensor d = gpu->upload(host);
    QCOMPARE(d.dtype(), DType::f16);
    const QString mismatch = compare(gpu->download(d), Tensor::from_f32({7, 143}, want), kExact);
    QVERIFY2(mismatch.isEmpty(), qPrintable(mismatch));
  }

  // The device-side 8-bit conversion against the CPU backend's host loop: every finite fp16 value (the
  // CUDA activations' type), bit for bit, and a NaN or infinity anywhere refused.
  void download_rgb8() {
    Values every;
    for (std::uint32_t bits = 0; bits < 65536; ++bits) {
      const float x = half_to_float(static_cast<std::uint16_t>(bits));
      if (std::isfinite(x)) every.push_back(x);
    }
    const Tensor x = Tensor::from_f32({1, static_cast<std::int64_t>(every.size())}, every);
    const auto got = gpu->download_rgb8(gpu->upload(x));
    const auto want = cpu.download_rgb8(cpu.upload(x));
    QVERIFY(got.has_value() && want.has_value());
    QCOMPARE(got->size(), want->size());
    for (std::size_t i = 0; i < every.size(); ++i)
      if ((*got)[i] != (*want)[i])
        QFAIL(qPrintable(QString("value %1: %2, expected %3").arg(every[i]).arg((*got)[i]).arg((*want)[i])));
    for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      Values w(1031, 0.25f);  // the flag after an odd number of bytes
      w[1030] = bad;
      QVERIFY(!gpu->download_rgb8(gpu->upload(Tensor::from_f32({1031}, w))).has_value());
    }
    const auto after = gpu->download_rgb8(gpu->upload(Tensor::from_f32({3}, Values{-1, 0, 1})));  // flag starts clear
    QVERIFY(after.has_value());
    QCOMPARE(*after, (std::vector<std::uint8_t>{0, 128, 255}));
    expect_backend_usable();
  }

  // The sampler's step on the device gives the CPU's values bit for bit (core/sampler_rule.h): every
  // rule, with and without guidance, the history written back, the kept region, the not-finite flags.
  void sampler_step_equals_the_cpu() {
    const std::int64_t c = 4, h = 5, w = 7, n = c * h * w;
    std::mt19937 rng(11);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    const auto draw = [&](std::int64_t count, bool half) {
      Values v(static_cast<std::size_t>(count));
      for (auto& x : v) x = half ? half_to_float(float_to_half(normal(rng))) : normal(rng);
      return v;
    };
    const Values prediction = draw(2 * n, true), x = draw(n, false), history = draw(n, false), noise = draw(n, false),
                 keep = draw(n, false);
    Values mask(static_cast<std::size_t>(h * w));
    for (std::size_t p = 0; p < mask.size(); ++p) mask[p] = p % 3 ? 1.0f : 0.0f;
    std::vector<SamplerRule> rules;
    for (const int kind : {SamplerRule::ddim, SamplerRule::dpm, SamplerRule::euler})
      for (const int v : {0, 1}) {
        SamplerRule r;
        r.kind = kind;
        r.v_prediction = v;
        r.history = kind == SamplerRule::dpm && v;
        r.clip = kind == SamplerRule::ddim && v;
        r.noise = kind == SamplerRule::euler && v;
        r.s[0] = 0.83f, r.s[1] = kind == SamplerRule::euler ? 1.7f : 0.55f, r.s[2] = -0.31f, r.s[3] = 0.27f,
        r.s[4] = 0.6f, r.s[5] = 0.13f;
        rules.push_back(r);
      }
    const auto run = [&](Backend& b, const SamplerRule& rule, std::int64_t batch, const Values& pred, Values& hist_out,
                         std::int32_t& flags_out) {
      const auto p = b.upload(Tensor::from_f32({batch, c, h, w}, std::span(pred).first(static_cast<std::size_t>(batch * n))));
      auto hist = b.upload_f32(history, {c, h, w});
      const auto z = b.upload_f32(noise, {c, h, w}), m = b.upload_f32(mask, {h, w}), k = b.upload_f32(keep, {c, h, w});
      auto flags = b.upload(Tensor::from_i64({1}, std::vector<std::int64_t>{0}));
      const auto out = b.sampler_step(p, 6.5f, rule, b.upload_f32(x, {c, h, w}), &hist, &z, &m, &k, flags);
      hist_out = b.download(hist).to_f32();
      flags_out = static_cast<std::int32_t>(b.download(flags).to_f32()[0]);
      return b.download(out).to_f32();
    };
    for (const auto& rule : rules)
      for (const std::int64_t batch : {1, 2}) {
        Values h_cpu, h_gpu;
        std::int32_t f_cpu = -1, f_gpu = -1;
        const auto want = run(cpu, rule, batch, prediction, h_cpu, f_cpu);
        const auto got = run(*gpu, rule, batch, prediction, h_gpu, f_gpu);
        const QString where = QStringLiteral("kind %1 v %2 batch %3").arg(rule.kind).arg(rule.v_prediction).arg(batch);
        QVERIFY2(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0, qPrintable(where));
        QVERIFY2(std::memcmp(h_gpu.data(), h_cpu.data(), h_gpu.size() * sizeof(float)) == 0, qPrintable(where));
        QCOMPARE(f_gpu, 0);
        QCOMPARE(f_cpu, 0);
        QVERIFY2(got != x, qPrintable(where));
      }
    // A prediction that is not finite sets bit 1 (and, through the step, bit 2), on both.
    Values bad = prediction;
    bad[static_cast<std::size_t>(n + 5)] = INFINITY;
    Values h_cpu, h_gpu;
    std::int32_t f_cpu = 0, f_gpu = 0;
    run(cpu, rules[2], 2, bad, h_cpu, f_cpu);
    run(*gpu, rules[2], 2, bad, h_gpu, f_gpu);
    QCOMPARE(f_gpu, f_cpu);
    QVERIFY(f_gpu & 1);
    // The next step's input: x / divisor as fp16, twice for guidance.
    const auto in_gpu = gpu->download(gpu->sampler_input(gpu->upload_f32(x, {c, h, w}), 1.37f, 2)).to_f32();
    const auto in_cpu = cpu.download(cpu.sampler_input(cpu.upload_f32(x, {c, h, w}), 1.37f, 2)).to_f32();
    QCOMPARE(in_gpu.size(), in_cpu.size());
    for (std::size_t i = 0; i < in_gpu.size(); ++i) QCOMPARE(in_gpu[i], half_to_float(float_to_half(in_cpu[i])));
    expect_backend_usable();
  }

  void integers_views_and_empty_tensors() {
    const std::vector<std::int64_t> ids = {0, 49407, 7, -3, 2147483647};
    const DeviceTensor di = gpu->upload(Tensor::from_i64({5}, ids));
    QCOMPARE(di.dtype(), DType::i32);
    QCOMPARE(gpu->download(di).to_f32(), (Values{0, 49407, 7, -3, 2147483647.0f}));
    const std::vector<std::int64_t> huge = {std::int64_t{1} << 40};
    EXPECT_ERROR_CODE(gpu->upload(Tensor::from_i64({1}, huge)), ErrorCode::invalid_argument);

    const DeviceTensor x = gpu->upload(Tensor::from_f32({3, 5}, Values{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
    QCOMPARE(gpu->download(x.slice_rows(1, 3)).to_f32(), (Values{6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
    QCOMPARE(gpu->download(x.reshaped({5, 3})).shape(), (Shape{5, 3}));
    const DeviceTensor none = gpu->upload(Tensor::from_f32({0, 4}, Values{}));
    QCOMPARE(gpu->download(none).shape(), (Shape{0, 4}));
    QCOMPARE(gpu->download(gpu->scale(none, 2.0f)).shape(), (Shape{0, 4}));
  }

  void activations_data() {
    QTest::addColumn<Activation>("act");
    QTest::addColumn<QList<qint64>>("shape");
    QTest::addColumn<bool>("unaligned");  // a row view at an odd offset: the one-element path
    for (auto [name, act] : {std::pair{"silu", Activation::silu}, std::pair{"gelu", Activation::gelu},
                             std::pair{"quick_gelu", Activation::quick_gelu}, std::pair{"none", Activation::none}}) {
      QTest::addRow("%s [2, 4999]", name) << act << QList<qint64>{2, 4999} << false;
      QTest::addRow("%s [2, 64, 40]", name) << act << QList<qint64>{2, 64, 40} << false;
      QTest::addRow("%s unaligned view", name) << act << QList<qint64>{2, 4999} << true;
    }
  }
  void activations() {
    QFETCH(Activation, act);
    QFETCH(QList<qint64>, shape);
    QFETCH(bool, unaligned);
    Shape s = to_shape(shape);
    if (unaligned) s[0] += 1;  // uploaded with one extra row, viewed from row 1
    const Tensor x = Tensor::from_f32(s, half_random(shape_numel(s), 2, 6.0f));
    EXPECT_SAME_RESULT(Op([&](Backend& b) {
                         auto dx = b.upload(x);
                         if (unaligned) dx = dx.slice_rows(1, s[0]);
                         return b.download(b.activation(dx, act));
                       }),
                       kTolerance);
  }

  void geglu_data() {
    QTest::addColumn<QList<qint64>>("shape");
    QTest::newRow("F = 7") << QList<qint64>{2, 3, 14};
    QTest::newRow("F = 40") << QList<qint64>{2, 5, 80};
    QTest::newRow("F = 1280") << QList<qint64>{2, 9, 2560};
  }
  void geglu() {
    QFETCH(QList<qint64>, shape);
    const Tensor x = Tensor::from_f32(to_shape(shape), half_random(shape_numel(to_shape(shape)), 3, 3.0f));
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.geglu(b.upload(x))); }), kTolerance);
  }

  void binary_broadcast_data() {
    QTest::addColumn<QList<qint64>>("a_shape");
    QTest::addColumn<QList<qint64>>("b_shape");
    const QList<qint64> odd{2, 3, 5, 7}, even{2, 4, 6, 16};
    QTest::newRow("same, odd") << odd << odd;
    QTest::newRow("channels, odd") << odd << QList<qint64>{7};
    QTest::newRow("suffix, odd") << odd << QList<qint64>{5, 7};
    QTest::newRow("per batch and channel, odd") << odd << QList<qint64>{2, 1, 1, 7};
    QTest::newRow("per batch and row") << odd << QList<qint64>{2, 3, 1, 1};
    QTest::newRow("scalar") << odd << QList<qint64>{1};
    QTest::newRow("same, 16 channels") << even << even;
    QTest::newRow("channels, 16") << even << QList<qint64>{16};
    QTest::newRow("suffix, 16") << even << QList<qint64>{6, 16};
    QTest::newRow("time embedding, 16") << even << QList<qint64>{2, 1, 1, 16};
    QTest::newRow("bias over [2, 9, 320]") << QList<qint64>{2, 9, 320} << QList<qint64>{320};
  }
  void binary_broadcast() {
    QFETCH(QList<qint64>, a_shape);
    QFETCH(QList<qint64>, b_shape);
    const Shape as = to_shape(a_shape), bs = to_shape(b_shape);
    const Tensor a = Tensor::from_f32(as, half_random(shape_numel(as), 4, 2.0f));
    const Tensor b = Tensor::from_f32(bs, half_random(shape_numel(bs), 5, 2.0f));
    EXPECT_SAME_RESULT(Op([&](Backend& be) { return be.download(be.add(be.upload(a), be.upload(b))); }), kTolerance);
    EXPECT_SAME_RESULT(Op([&](Backend& be) { return be.download(be.mul(be.upload(a), be.upload(b))); }), kTolerance);
  }

  void scale() {
    for (const Shape& s : {Shape{2, 11}, Shape{2, 64, 8}}) {
      const Tensor x = Tensor::from_f32(s, half_random(shape_numel(s), 6, 4.0f));
      EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.scale(b.upload(x), -0.37f)); }), kTolerance);
      EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.scale(b.upload(x), 0.18215f)); }), kTolerance);
    }
  }

  // Sizes as the U-Net meets them (2x, and to a skip connection's odd size), plus shrinking.
  void upsample_nearest_data() {
    QTest::addColumn<QList<qint64>>("in");   // H, W, C
    QTest::addColumn<QList<qint64>>("out");  // Ho, Wo
    QTest::newRow("2x, C = 7") << QList<qint64>{3, 5, 7} << QList<qint64>{6, 10};
    QTest::newRow("2x3 -> 5x7") << QList<qint64>{2, 3, 3} << QList<qint64>{5, 7};
    QTest::newRow("7x13 -> 13x25, C = 16") << QList<qint64>{7, 13, 16} << QList<qint64>{13, 25};
    QTest::newRow("17x9 -> 33x19, C = 16") << QList<qint64>{17, 9, 16} << QList<qint64>{33, 19};
    QTest::newRow("9x8 -> 4x5 (shrink)") << QList<qint64>{9, 8, 7} << QList<qint64>{4, 5};
    QTest::newRow("same size") << QList<qint64>{5, 5, 8} << QList<qint64>{5, 5};
    QTest::newRow("2x, C = 320") << QList<qint64>{8, 8, 320} << QList<qint64>{16, 16};
    QTest::newRow("27x41 -> 80x123, C = 3") << QList<qint64>{27, 41, 3} << QList<qint64>{80, 123};
  }
  void upsample_nearest() {
    QFETCH(QList<qint64>, in);
    QFETCH(QList<qint64>, out);
    const Shape s{2, in[0], in[1], in[2]};
    const Tensor x = Tensor::from_f32(s, half_random(shape_numel(s), 7));
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.upsample_nearest(b.upload(x), out[0], out[1])); }),
                       kExact);
  }

  void concat_and_slice_channels_data() {
    QTest::addColumn<int>("ca");
    QTest::addColumn<int>("cb");
    QTest::addColumn<int>("begin");  // of the slice of the concatenation
    QTest::addColumn<int>("end");
    QTest::newRow("odd") << 4 << 7 << 3 << 9;
    QTest::newRow("multiples of 8") << 16 << 24 << 8 << 32;
    QTest::newRow("U-Net skip 320 + 320") << 320 << 320 << 0 << 320;
    QTest::newRow("b at an odd channel") << 5 << 16 << 5 << 21;
    QTest::newRow("slice at odd offsets") << 8 << 8 << 1 << 15;
  }
  void concat_and_slice_channels() {
    QFETCH(int, ca);
    QFETCH(int, cb);
    QFETCH(int, begin);
    QFETCH(int, end);
    const Tensor a = Tensor::from_f32({2, 3, 5, ca}, half_random(2 * 3 * 5 * ca, 8));
    const Tensor b = Tensor::from_f32({2, 3, 5, cb}, half_random(2 * 3 * 5 * cb, 9));
    EXPECT_SAME_RESULT(Op([&](Backend& be) { return be.download(be.concat_channels(be.upload(a), be.upload(b))); }),
                       kExact);
    EXPECT_SAME_RESULT(Op([&](Backend& be) {
                         return be.download(be.slice_channels(be.concat_channels(be.upload(a), be.upload(b)), begin, end));
                       }),
                       kExact);
  }

  void embedding() {
    struct Case {
      std::int64_t vocab, c;
    };
    for (const Case& size : {Case{11, 5}, Case{1000, 64}}) {
      const std::int64_t vocab = size.vocab, c = size.c;
      const Tensor table = Tensor::from_f32({vocab, c}, half_random(vocab * c, 10));
      const std::vector<std::int64_t> id_values = {3, 0, vocab - 1, 3, 7, 1, 9, 2, 0, 5, 4, 8, 6, 10};
      const Tensor ids = Tensor::from_i64({2, 7}, id_values);
      EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.embedding(b.upload(table), b.upload(ids))); }),
                         kExact);
      const DeviceTensor dt = gpu->upload(table);
      for (const auto& bad : {std::vector<std::int64_t>{1, vocab, 2}, std::vector<std::int64_t>{-1, 0}}) {
        try {
          gpu->embedding(dt, gpu->upload(Tensor::from_i64({static_cast<std::int64_t>(bad.size())}, bad)));
          QFAIL("embedding with an id outside the table did not throw");
        } catch (const Error& e) {
          QCOMPARE(e.code(), ErrorCode::invalid_argument);
          const QString expected = bad[0] < 0 ? "id -1 at position 0" : QString("id %1 at position 1").arg(vocab);
          QVERIFY2(QString(e.what()).contains(expected), e.what());
        }
      }
      expect_backend_usable();
    }
  }

  // Attention with explicit probabilities (cross-attention control): the probabilities, their product
  // with the values, and the replacement of key columns, each against the CPU backend. Head widths
  // of SD1 (40, 160) and SD2 (64), the 77 text tokens, odd query counts, odd head widths and leading
  // dimensions for the batched GEMMs (5, 130), causal masking in the softmax, and more keys than a
  // warp's three passes (700).
  void attention_with_probabilities_data() {
    QTest::addColumn<int>("lq");
    QTest::addColumn<int>("lk");
    QTest::addColumn<int>("heads");
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<bool>("causal");
    QTest::newRow("SD2 cross, head 64") << 37 << 77 << 5 << 64 << false;
    QTest::newRow("SD1 cross, head 40") << 9 << 77 << 8 << 40 << false;
    QTest::newRow("SD1 cross, head 160") << 13 << 77 << 2 << 160 << false;
    QTest::newRow("odd head 5, causal") << 7 << 7 << 3 << 5 << true;
    QTest::newRow("head 130, 33 keys") << 11 << 33 << 1 << 130 << false;
    QTest::newRow("700 keys: too many to stage in shared memory") << 5 << 700 << 2 << 64 << false;
  }
  void attention_with_probabilities() {
    QFETCH(int, lq);
    QFETCH(int, lk);
    QFETCH(int, heads);
    QFETCH(int, head_dim);
    QFETCH(bool, causal);
    const std::int64_t batch = 2, c = std::int64_t{heads} * head_dim;
    // Queries scaled up so that the softmax is far from uniform.
    const Tensor q = Tensor::from_f32({batch, lq, c}, half_random(batch * lq * c, 31, 3.0f));
    const Tensor k = Tensor::from_f32({batch, lk, c}, half_random(batch * lk * c, 32));
    const Tensor v = Tensor::from_f32({batch, lk, c}, half_random(batch * lk * c, 33));
    const AttentionParams params{.heads = heads, .scale = 1.0f / std::sqrt(float(head_dim)), .causal = causal};
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.attention_probs(b.upload(q), b.upload(k), params)); }),
                       kTolerance);
    // The same probabilities on both backends (fp16-exact values), so apply is tested on its own.
    const Tensor p = cpu.download(cpu.attention_probs(cpu.upload(q), cpu.upload(k), params));
    Values rounded = p.to_f32();
    for (auto& x : rounded) x = half_to_float(float_to_half(x));
    const Tensor probs = Tensor::from_f32(p.shape(), rounded);
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.attention_apply(b.upload(probs), b.upload(v))); }),
                       kTolerance);
    // And the whole route against the backend's own attention.
    const QString mismatch =
        compare(gpu->download(gpu->attention_apply(gpu->attention_probs(gpu->upload(q), gpu->upload(k), params), gpu->upload(v))),
                gpu->download(gpu->attention(gpu->upload(q), gpu->upload(k), gpu->upload(v), params)), kTolerance);
    QVERIFY2(mismatch.isEmpty(), qPrintable("probabilities route vs attention: " + mismatch));
  }

  // Column replacement copies fp16 values: bit for bit, in the chosen batch item only. Columns out of
  // range keep the new value on the GPU (the CPU backend rejects them).
  void replace_attention_columns() {
    const std::int64_t batch = 2, heads = 3, lq = 37, lk = 77, ls = 70;
    const Tensor p = Tensor::from_f32({batch, heads, lq, lk}, half_random(batch * heads * lq * lk, 34));
    const Tensor source = Tensor::from_f32({1, heads, lq, ls}, half_random(heads * lq * ls, 35));
    std::vector<std::int64_t> columns(static_cast<std::size_t>(lk), -1);
    for (std::int64_t j = 0; j < lk; ++j)
      if (j % 3 != 1) columns[static_cast<std::size_t>(j)] = (j * 7) % ls;
    const Tensor ids = Tensor::from_i64({lk}, columns);
    for (std::int64_t first : {0, 1})
      EXPECT_SAME_RESULT(Op([&](Backend& b) {
                           return b.download(b.replace_attention_columns(b.upload(p), b.upload(source), b.upload(ids), first));
                         }),
                         kExact);
    columns[0] = ls;  // out of range: kept
    const auto got = gpu->download(gpu->replace_attention_columns(gpu->upload(p), gpu->upload(source),
                                                                  gpu->upload(Tensor::from_i64({lk}, columns)), 1))
                         .to_f32();
    const auto want = p.to_f32();
    for (std::int64_t row = 0; row < heads * lq; ++row) {
      const auto at = static_cast<std::size_t>((heads * lq + row) * lk);
      QCOMPARE(got[at], want[at]);
    }
    expect_backend_usable();
  }

  void layout_conversion_data() {
    QTest::addColumn<QList<qint64>>("nchw");
    QTest::newRow("[2, 3, 5, 7]") << QList<qint64>{2, 3, 5, 7};
    QTest::newRow("[2, 40, 33, 35] (partial tiles)") << QList<qint64>{2, 40, 33, 35};
    QTest::newRow("[1, 4, 64, 64] (latent)") << QList<qint64>{1, 4, 64, 64};
  }
  void layout_conversion() {
    QFETCH(QList<qint64>, nchw);
    const Shape s = to_shape(nchw);
    const Tensor x = Tensor::from_f32(s, half_random(shape_numel(s), 11));
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.nchw_to_nhwc(b.upload(x))); }), kExact);
    EXPECT_SAME_RESULT(Op([&](Backend& b) { return b.download(b.nhwc_to_nchw(b.nchw_to_nhwc(b.upload(x)))); }),
                       kExact);
    const QString round_trip = compare(gpu->download(gpu->nhwc_to_nchw(gpu->nchw_to_nhwc(gpu->upload(x)))), x, kExact);
    QVERIFY2(round_trip.isEmpty(), qPrintable("NCHW -> NHWC -> NCHW: " + round_trip));
  }

  void group_norm_data() {
    QTest::addColumn<int>("groups");
    QTest::addColumn<QList<qint64>>("shape");  // [N, H, W, C]
    QTest::addColumn<bool>("silu");
    QTest::addColumn<float>("offset");  // mean of the input: large offsets test the variance's stability
    QTest::newRow("4 groups") << 4 << QList<qint64>{2, 5, 7, 12} << false << 0.5f;
    QTest::newRow("4 groups + silu") << 4 << QList<qint64>{2, 5, 7, 12} << true << 0.5f;
    QTest::newRow("3 groups + silu") << 3 << QList<qint64>{2, 5, 7, 12} << true << 0.5f;
    QTest::newRow("32 groups of 2") << 32 << QList<qint64>{2, 9, 11, 64} << true << -1.0f;
    QTest::newRow("32 groups of 10, C = 320") << 32 << QList<qint64>{2, 8, 8, 320} << true << 0.5f;
    QTest::newRow("8 groups of 8, 3 blocks per group") << 8 << QList<qint64>{2, 65, 64, 64} << false << 0.5f;
    QTest::newRow("32 groups of 8, offset 20") << 32 << QList<qint64>{2, 64, 64, 256} << true << 20.0f;
    QTest::newRow("[N, L, C] sequence") << 32 << QList<qint64>{2, 77, 128} << false << 0.0f;
    QTest::newRow("VAE-like: 32 groups of 4, offset 20") << 32 << QList<qint64>{1, 96, 80, 128} << true << 20.0f;
    QTest::newRow("C = 2560 (U-Net skip concat)") << 32 << QList<qint64>{2, 6, 5, 2560} << true << 0.5f;
    QTest::newRow("C = 4104 (past the row kernels)") << 8 << QList<qint64>{2, 3, 5, 4104} << false << 0.5f;
    QTest::newRow("one position") << 32 << QList<qint64>{2, 1, 1, 320} << true << 0.5f;
  }
  void group_norm() {
    QFETCH(int, groups);
    QFETCH(QList<qint64>, shape);
    QFETCH(bool, silu);
    QFETCH(float, offset);
    const Shape s = to_shape(shape);
    const std::int64_t n = s[0], c = s.back();
    const Tensor x = Tensor::from_f32(s, half_random(shape_numel(s), 12, 3.0f, offset));
    const Tensor other = Tensor::from_f32(s, half_random(shape_numel(s), 13, 2.0f, offset));
    const Tensor gamma = Tensor::from_f32({c}, half_random(c, 14, 1.0f, 1.0f));
    const Tensor beta = Tensor::from_f32({c}, half_random(c, 15));
    const float eps = 1e-6f;

    struct Result {
      Tensor y, mean, var, y_given_own, y_other;
      QString copied_stats;  // stats_out given stats_in against stats_in
    };
    const auto run = [&](Backend& b) {
      const auto dx = b.upload(x), dg = b.upload(gamma), db = b.upload(beta);
      GroupNormStats stats;
      Result r;
      r.y = b.download(b.group_norm(dx, dg, db, groups, eps, silu, &stats));
      r.mean = b.download(stats.mean);
      r.var = b.download(stats.var);
      GroupNormStats copied;
      r.y_given_own = b.download(b.group_norm(dx, dg, db, groups, eps, silu, &copied, &stats));
      r.copied_stats = compare(b.download(copied.mean), r.mean, kExact) + compare(b.download(copied.var), r.var, kExact);
      r.y_other = b.download(b.group_norm(b.upload(other), dg, db, groups, eps, silu, nullptr, &stats));
      return r;
    };
    const Result got = run(*gpu), want = run(cpu);
    QCOMPARE(got.mean.shape(), (Shape{n, groups}));
    const QString checks[] = {
        compare(got.y, want.y, kTolerance),
        compare(got.mean, want.mean, 1e-3),
        compare(got.var, want.var, 1e-3),
        // The same statistics given back must give the same output, bit for bit.
        compare(got.y_given_own, got.y, kExact),
        compare(got.y_other, want.y_other, kTolerance),
        got.copied_stats,
    };
    const char* what[] = {"output", "stats_out mean", "stats_out var", "output from its own stats_in (vs computed)",
                          "other data normalised with x's stats_in", "stats_out when stats_in is given"};
    for (int i = 0; i < 6; ++i) QVERIFY2(checks[i].isEmpty(), qPrintable(QString(what[i]) + ": " + checks[i]));
  }

  void layer_norm_data() {
    QTest::addColumn<QList<qint64>>("shape");
    QTest::addColumn<float>("offset");
    QTest::newRow("[2, 7, 13]") << QList<qint64>{2, 7, 13} << -0.7f;
    QTest::newRow("[1, 4, 7]") << QList<qint64>{1, 4, 7} << 0.0f;
    QTest::newRow("[2, 9, 320]") << QList<qint64>{2, 9, 320} << 0.3f;
    QTest::newRow("[2, 77, 1024]") << QList<qint64>{2, 77, 1024} << 1.0f;
    QTest::newRow("[2, 5, 1280]") << QList<qint64>{2, 5, 1280} << 0.0f;
    QTest::newRow("[3, 2000], offset 30") << QList<qint64>{3, 2000} << 30.0f;
  }
  void layer_norm() {
    QFETCH(QList<qint64>, shape);
    QFETCH(float, offset);
    const Shape s = to_shape(shape);
    const std::int64_t c = s.back();
    const Tensor x = Tensor::from_f32(s, half_random(shape_numel(s), 16, 2.0f, offset));
    const Tensor gamma = Tensor::from_f32({c}, half_random(c, 17, 1.0f, 1.0f));
    const Tensor beta = Tensor::from_f32({c}, half_random(c, 18));
    EXPECT_SAME_RESULT(Op([&](Backend& b) {
                         return b.download(b.layer_norm(b.upload(x), b.upload(gamma), b.upload(beta), 1e-5f));
                       }),
                       kTolerance);
  }

  // A freed block goes back to the cache and serves the next request of its size without the driver;
  // what the pool holds always adds up (reserved = in use + cached), and releasing the cache gives back
  // the segments this test made.
  void memory_pool_reuses_blocks() {
    cuda::MemoryPool& pool = gpu->memory_pool();
    gpu->synchronize();
    pool.release_cached();
    const std::size_t in_use = pool.bytes_in_use(), reserved = pool.bytes_reserved();
    QCOMPARE(pool.bytes_reserved(), pool.bytes_in_use() + pool.bytes_cached());
    pool.reset_peak();
    std::size_t block = 0;
    {
      const DeviceTensor t = gpu->allocate(DType::f16, {1000003});
      block = pool.bytes_in_use() - in_use;
      QVERIFY2(block >= 2000006 && block < 2000006 + (std::size_t{1} << 20), qPrintable(QString("block of %1 bytes for 2000006").arg(block)));
      QCOMPARE(pool.bytes_reserved(), pool.bytes_in_use() + pool.bytes_cached());
    }
    QCOMPARE(pool.bytes_in_use(), in_use);
    QVERIFY(pool.bytes_cached() >= block);
    const std::size_t peak = pool.peak_bytes_in_use(), allocations = pool.driver_allocations();
    {
      const DeviceTensor again = gpu->allocate(DType::f16, {1000003});
      QCOMPARE(pool.driver_allocations(), allocations);
      QCOMPARE(pool.bytes_in_use(), in_use + block);
      QCOMPARE(pool.peak_bytes_in_use(), peak);
    }
    QCOMPARE(pool.bytes_reserved(), pool.bytes_in_use() + pool.bytes_cached());
    pool.release_cached();
    QCOMPARE(pool.bytes_in_use(), in_use);
    QCOMPARE(pool.bytes_reserved(), reserved);
  }

  // The first edit after a generation: the many small tensors of a sparse step are cut from the large
  // blocks the generation freed, not asked of the driver one by one; freed, they merge back, and the
  // large block serves a large request again.
  void memory_pool_cuts_small_blocks_from_large_ones() {
    cuda::MemoryPool& pool = gpu->memory_pool();
    gpu->synchronize();
    pool.release_cached();
    const std::size_t reserved = pool.bytes_reserved();
    { const DeviceTensor large = gpu->allocate(DType::f16, {std::int64_t{48} << 20}); }  // 96 MiB, freed
    const std::size_t allocations = pool.driver_allocations();
    {
      std::vector<DeviceTensor> small;
      for (int i = 0; i < 300; ++i) small.push_back(gpu->allocate(DType::f16, {1000 + 997 * (i % 200)}));  // 2 KB to 400 KB
      for (int i = 0; i < 10; ++i) small.push_back(gpu->allocate(DType::f16, {std::int64_t{1} << 20}));    // 2 MiB
      QCOMPARE(pool.driver_allocations(), allocations);
    }
    { const DeviceTensor large = gpu->allocate(DType::f16, {std::int64_t{48} << 20}); }
    QCOMPARE(pool.driver_allocations(), allocations);
    QCOMPARE(pool.bytes_reserved(), pool.bytes_in_use() + pool.bytes_cached());
    pool.release_cached();
    QCOMPARE(pool.bytes_reserved(), reserved);
  }

  // Requests no GPU can hold are Error(out_of_memory), from allocate and from an op's output, and the
  // backend goes on working.
  void out_of_memory_is_an_error() {
    const std::size_t in_use = gpu->memory_pool().bytes_in_use();
    EXPECT_ERROR_CODE(gpu->allocate(DType::u8, {std::int64_t{1} << 50}), ErrorCode::out_of_memory);  // 1 PiB
    QCOMPARE(gpu->memory_pool().bytes_in_use(), in_use);
    expect_backend_usable();
    const DeviceTensor x = gpu->upload(Tensor::from_f32({2, 4, 4, 8}, half_random(256, 19)));
    const std::size_t with_x = gpu->memory_pool().bytes_in_use();
    EXPECT_ERROR_CODE(gpu->upsample_nearest(x, std::int64_t{1} << 22, std::int64_t{1} << 22), ErrorCode::out_of_memory);
    QCOMPARE(gpu->memory_pool().bytes_in_use(), with_x);
    expect_backend_usable();
  }
};

FISEDIT_GPU_TEST_MAIN(TestCudaOps)

#include "test_cuda_ops.moc"
