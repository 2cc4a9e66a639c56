// Every CPU backend op against a naive loop written from the op's definition (torch semantics), on
// small random inputs of odd sizes and batch 2: relative L2 error <= 1e-5. Bad input gives Errors.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/half.h"

#include "test_support.h"

#include <QtTest>

#include <algorithm>
#include <array>
#include <cmath>
#include <random>

using namespace fisedit;
using Values = std::vector<float>;

namespace {

constexpr double kTolerance = 1e-5;

Values random_values(std::int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Values v(static_cast<std::size_t>(n));
  for (auto& x : v) x = dist(rng);
  return v;
}

using test::relative_l2;

float reference_activation(float x, Activation act) {
  switch (act) {
    case Activation::none: return x;
    case Activation::silu: return float(x / (1 + std::exp(-double(x))));
    case Activation::gelu: return float(0.5 * x * (1 + std::erf(x / std::sqrt(2.0))));
    case Activation::quick_gelu: return float(x / (1 + std::exp(-1.702 * x)));
  }
  return x;
}

// Compares a downloaded result with the reference, shapes first.
#define EXPECT_CLOSE(device_tensor, want_shape, want_values)                                              \
  do {                                                                                                    \
    const auto got_ = backend.download(device_tensor);                                                   \
    QCOMPARE(QString::fromStdString(shape_to_string(got_.shape())),                                     \
             QString::fromStdString(shape_to_string(want_shape)));                                       \
    const double err_ = relative_l2(got_.to_f32(), want_values);                                         \
    QVERIFY2(err_ <= kTolerance, qPrintable(QString("relative L2 error %1").arg(err_)));                 \
  } while (0)

#define EXPECT_ERROR(statement)                                                                           \
  do {                                                                                                    \
    bool thrown_ = false;                                                                                 \
    try {                                                                                                 \
      statement;                                                                                          \
    } catch (const Error& e) {                                                                            \
      thrown_ = e.code() == ErrorCode::invalid_argument;                                                  \
    }                                                                                                     \
    QVERIFY2(thrown_, "expected Error(invalid_argument) from " #statement);                               \
  } while (0)

// softmax(scale q k^T) per head in double, [batch, heads, lq, lk], zero past the causal limit; q [batch,
// lq, heads * d], k [batch, lk, heads * d].
std::vector<double> naive_probabilities(const Values& q, const Values& k, std::int64_t batch, std::int64_t lq,
                                        std::int64_t lk, std::int64_t heads, std::int64_t d, float scale, bool causal) {
  const std::int64_t c = heads * d;
  std::vector<double> p(static_cast<std::size_t>(batch * heads * lq * lk), 0.0);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < lq; ++i) {
        const std::int64_t valid = causal ? std::min<std::int64_t>(lk, i + 1) : lk;
        double* row = p.data() + ((b * heads + h) * lq + i) * lk;
        double max = -1e300, sum = 0;
        for (std::int64_t j = 0; j < valid; ++j) {
          double s = 0;
          for (std::int64_t e = 0; e < d; ++e) s += double(q[(b * lq + i) * c + h * d + e]) * k[(b * lk + j) * c + h * d + e];
          max = std::max(max, row[j] = s * scale);
        }
        for (std::int64_t j = 0; j < valid; ++j) sum += (row[j] = std::exp(row[j] - max));
        for (std::int64_t j = 0; j < valid; ++j) row[j] /= sum;
      }
  return p;
}

}  // namespace

Q_DECLARE_METATYPE(Activation)

class TestCpuOps : public QObject {
  Q_OBJECT
  CpuBackend backend;

  DeviceTensor up(const Shape& shape, const Values& v) { return backend.upload(Tensor::from_f32(shape, v)); }

private slots:
  void memory_conversions() {
    const Values v = {1.5f, -2.25f, 0.0f, 65504.0f, 1e-3f};
    std::vector<std::uint16_t> half, bf;
    for (float x : v) half.push_back(float_to_half(x)), bf.push_back(float_to_bf16(x));
    auto owner = std::make_shared<std::vector<std::uint16_t>>(half);
    const Tensor th(DType::f16, {5}, reinterpret_cast<const std::byte*>(owner->data()), owner);
    auto bowner = std::make_shared<std::vector<std::uint16_t>>(bf);
    const Tensor tb(DType::bf16, {5}, reinterpret_cast<const std::byte*>(bowner->data()), bowner);
    const auto dh = backend.upload(th), db = backend.upload(tb);
    QCOMPARE(dh.dtype(), DType::f32);
    for (std::size_t i = 0; i < v.size(); ++i) {
      QCOMPARE(backend.download(dh).to_f32()[i], half_to_float(half[i]));
      QCOMPARE(backend.download(db).to_f32()[i], bf16_to_float(bf[i]));
    }
    const std::vector<std::int64_t> ids = {0, 49407, 7};
    const auto di = backend.upload(Tensor::from_i64({3}, ids));
    QCOMPARE(di.dtype(), DType::i32);
    QCOMPARE(backend.download(di).to_f32(), (Values{0, 49407, 7}));
    const std::vector<std::int64_t> huge = {std::int64_t{1} << 40};
    EXPECT_ERROR(backend.upload(Tensor::from_i64({1}, huge)));
    const auto x = up({2, 3}, Values{1, 2, 3, 4, 5, 6});
    QCOMPARE(backend.download(x.slice_rows(1, 2)).to_f32(), (Values{4, 5, 6}));
    QCOMPARE(backend.download(x.reshaped({3, 2})).shape(), (Shape{3, 2}));
  }

  // An image's 8 bits as diffusers' numpy_to_pil: round(255 * clamp(x / 2 + 0.5, 0, 1)), ties to even
  // (numpy's rint), checked against nearbyint; not-finite values refused rather than made black.
  // The sampler's step: guidance, the rule, the history written back, the kept region and the flags;
  // refused with a clear error for inputs that do not fit together.
  void sampler_step() {
    const Values pred = {1, 2, 3, 4, 5, 6, 7, 8}, x = {0.5f, -0.5f, 1, 2};  // [2, 1, 2, 2], [1, 2, 2]
    SamplerRule euler;
    euler.kind = SamplerRule::euler;
    euler.s[0] = 2.0f, euler.s[3] = -0.5f;  // sigma 2, dt -0.5: x - 0.5 (x - (x - 2 m)) / 2 = x - 0.5 m
    auto flags = backend.upload(Tensor::from_i64({1}, std::vector<std::int64_t>{0}));
    const auto xs = backend.upload_f32(x, {1, 2, 2});
    const auto p = backend.upload(Tensor::from_f32({2, 1, 2, 2}, pred));
    const auto mask = backend.upload_f32(Values{1, 0, 1, 1}, {2, 2});
    const auto keep = backend.upload_f32(Values{9, 9, 9, 9}, {1, 2, 2});
    auto history = backend.upload_f32(Values{0, 0, 0, 0}, {1, 2, 2});
    const auto out = backend.sampler_step(p, 2.0f, euler, xs, &history, nullptr, &mask, &keep, flags);
    // guided m = u + 2 (c - u) = u + 8: 9, 10, 11, 12; the second value is kept.
    QCOMPARE(backend.download(out).to_f32(), (Values{0.5f - 4.5f, 9, 1 - 5.5f, 2 - 6}));
    QCOMPARE(backend.download(history).to_f32(), (Values{0.5f - 18, -0.5f - 20, 1 - 22, 2 - 24}));
    QCOMPARE(backend.download(flags).to_f32(), (Values{0}));
    const auto unguided = backend.sampler_step(backend.upload(Tensor::from_f32({1, 1, 2, 2}, Values{1, 2, 3, 4})), 2.0f,
                                               euler, xs, nullptr, nullptr, nullptr, nullptr, flags);
    QCOMPARE(backend.download(unguided).to_f32(), (Values{0, -1.5f, -0.5f, 0}));
    const auto bad = backend.upload(Tensor::from_f32({1, 1, 2, 2}, Values{1, INFINITY, 3, 4}));
    backend.sampler_step(bad, 1.0f, euler, xs, nullptr, nullptr, nullptr, nullptr, flags);
    QCOMPARE(backend.download(flags).to_f32(), (Values{3}));
    QCOMPARE(backend.download(backend.sampler_input(xs, 2.0f, 2)).to_f32(), (Values{0.25f, -0.25f, 0.5f, 1, 0.25f, -0.25f, 0.5f, 1}));
    // Refusals: a prediction of other latents, half-precision latents, a mask without kept latents, a
    // history the rule needs but is missing, flags of the wrong type.
    EXPECT_ERROR(backend.sampler_step(backend.upload(Tensor::from_f32({2, 1, 1, 4}, pred)), 1.0f, euler, xs, nullptr,
                                      nullptr, nullptr, nullptr, flags));
    EXPECT_ERROR(backend.sampler_step(p, 1.0f, euler, backend.upload(Tensor::from_i64({1, 2, 2}, std::vector<std::int64_t>{1, 2, 3, 4})),
                                      nullptr, nullptr, nullptr, nullptr, flags));
    EXPECT_ERROR(backend.sampler_step(p, 1.0f, euler, xs, nullptr, nullptr, &mask, nullptr, flags));
    SamplerRule second;
    second.kind = SamplerRule::dpm;
    second.history = 1;
    EXPECT_ERROR(backend.sampler_step(p, 1.0f, second, xs, nullptr, nullptr, nullptr, nullptr, flags));
    auto wrong = backend.upload_f32(Values{0}, {1});
    EXPECT_ERROR(backend.sampler_step(p, 1.0f, euler, xs, nullptr, nullptr, nullptr, nullptr, wrong));
    EXPECT_ERROR(backend.sampler_input(xs, 1.0f, 3));
  }

  // G linears of one input: each slice of the output is that matrix's linear, bit for bit.
  void linear_group() {
    const Values x = {1, 2, 3, -1, 0.5f, 2, 0, 1, -2, 4, 1, 1};  // [2, 2, 3]
    Values w(3 * 4 * 3);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * static_cast<float>(static_cast<int>(i % 7) - 3);
    const auto xd = backend.upload(Tensor::from_f32({2, 2, 3}, x));
    const auto wd = backend.upload(Tensor::from_f32({3, 4, 3}, w));
    const auto out = backend.linear_group(xd, wd);
    QCOMPARE(out.shape(), (Shape{3, 2, 2, 4}));
    const auto all = backend.download(out).to_f32();
    for (std::int64_t g = 0; g < 3; ++g) {
      const auto one = backend.download(backend.linear(xd, wd.slice_rows(g, g + 1).reshaped({4, 3}), DeviceTensor())).to_f32();
      QCOMPARE(Values(all.begin() + g * 16, all.begin() + (g + 1) * 16), one);
    }
    EXPECT_ERROR(backend.linear_group(xd, backend.upload(Tensor::from_f32({3, 4, 2}, Values(24, 1.0f)))));
    EXPECT_ERROR(backend.linear_group(xd, backend.upload(Tensor::from_f32({12, 3}, w))));
  }

  void download_rgb8() {
    Values v = {-1.0f, 1.0f, 0.0f, -3.0f, 5.0f, -0.0f, 1.0f / 255.0f, -1.0f + 1.0f / 255.0f, 0.999f};
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> wide(-1.2f, 1.2f);
    while (v.size() < 3001) v.push_back(wide(rng));
    // Values whose scaled form lands on k + 0.5 in float: the ties.
    for (int k = 0; k < 255; ++k) {
      const float unit = (k + 0.5f) / 255.0f;
      v.push_back((unit - 0.5f) * 2.0f);
    }
    const auto bytes = backend.download_rgb8(up({1, static_cast<std::int64_t>(v.size())}, v));
    QVERIFY(bytes.has_value());
    QCOMPARE(bytes->size(), v.size());
    int ties = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float scaled = 255.0f * std::clamp(v[i] / 2.0f + 0.5f, 0.0f, 1.0f);
      ties += scaled - std::floor(scaled) == 0.5f;
      QCOMPARE(int((*bytes)[i]), int(std::nearbyint(scaled)));
    }
    QVERIFY2(ties > 20, qPrintable(QString("only %1 ties tested").arg(ties)));
    QCOMPARE(int((*bytes)[0]), 0);
    QCOMPARE(int((*bytes)[1]), 255);
    QCOMPARE(int((*bytes)[2]), 128);  // 127.5: to even
    for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      Values w(7, 0.25f);
      w[5] = bad;
      QVERIFY(!backend.download_rgb8(up({7}, w)).has_value());
    }
    EXPECT_ERROR(backend.download_rgb8(backend.upload(Tensor::from_i64({2}, std::vector<std::int64_t>{1, 2}))));
  }

  void linear_data() {
    QTest::addColumn<Activation>("act");
    QTest::addColumn<bool>("with_bias");
    QTest::newRow("none") << Activation::none << true;
    QTest::newRow("no bias") << Activation::none << false;
    QTest::newRow("silu") << Activation::silu << true;
    QTest::newRow("gelu") << Activation::gelu << true;
    QTest::newRow("quick_gelu") << Activation::quick_gelu << true;
  }
  void linear() {
    QFETCH(Activation, act);
    QFETCH(bool, with_bias);
    const std::int64_t b = 2, l = 5, k = 7, n = 9;
    const auto x = random_values(b * l * k, 1), w = random_values(n * k, 2), bias = random_values(n, 3);
    Values want(static_cast<std::size_t>(b * l * n));
    for (std::int64_t r = 0; r < b * l; ++r)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = with_bias ? bias[j] : 0.0;
        for (std::int64_t i = 0; i < k; ++i) s += double(x[r * k + i]) * w[j * k + i];
        want[r * n + j] = reference_activation(float(s), act);
      }
    const auto y = backend.linear(up({b, l, k}, x), up({n, k}, w), with_bias ? up({n}, bias) : DeviceTensor(), act);
    EXPECT_CLOSE(y, (Shape{b, l, n}), want);
  }

  void conv2d_data() {
    QTest::addColumn<int>("kernel");
    QTest::addColumn<int>("stride");
    QTest::addColumn<QList<int>>("pad");  // top, bottom, left, right
    QTest::addColumn<int>("cin");
    QTest::addColumn<int>("size");
    QTest::newRow("3x3 pad 1") << 3 << 1 << QList<int>{1, 1, 1, 1} << 5 << 9;
    QTest::newRow("3x3 stride 2 pad 1") << 3 << 2 << QList<int>{1, 1, 1, 1} << 5 << 9;
    QTest::newRow("3x3 stride 2 pad (0,1,0,1)") << 3 << 2 << QList<int>{0, 1, 0, 1} << 5 << 9;
    QTest::newRow("1x1") << 1 << 1 << QList<int>{0, 0, 0, 0} << 5 << 9;
    QTest::newRow("1x1 stride 2") << 1 << 2 << QList<int>{0, 0, 0, 0} << 5 << 9;
    QTest::newRow("3x3 chunked im2col") << 3 << 1 << QList<int>{1, 1, 1, 1} << 64 << 91;
  }
  void conv2d() {
    QFETCH(int, kernel);
    QFETCH(int, stride);
    QFETCH(QList<int>, pad);
    QFETCH(int, cin);
    QFETCH(int, size);
    const std::int64_t n = 2, h = size, w = size - 2, cout = 6, kk = kernel;
    const Conv2dParams p{stride, pad[0], pad[1], pad[2], pad[3]};
    const std::int64_t ho = (h + p.pad_top + p.pad_bottom - kk) / stride + 1;
    const std::int64_t wo = (w + p.pad_left + p.pad_right - kk) / stride + 1;
    const auto x = random_values(n * h * w * cin, 4), wt = random_values(cout * cin * kk * kk, 5);
    const auto bias = random_values(cout, 6);
    Values want(static_cast<std::size_t>(n * ho * wo * cout));
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t oy = 0; oy < ho; ++oy)
        for (std::int64_t ox = 0; ox < wo; ++ox)
          for (std::int64_t o = 0; o < cout; ++o) {
            double s = bias[o];
            for (std::int64_t c = 0; c < cin; ++c)
              for (std::int64_t ky = 0; ky < kk; ++ky)
                for (std::int64_t kx = 0; kx < kk; ++kx) {
                  const std::int64_t iy = oy * stride - p.pad_top + ky, ix = ox * stride - p.pad_left + kx;
                  if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                  s += double(x[((b * h + iy) * w + ix) * cin + c]) * wt[((o * cin + c) * kk + ky) * kk + kx];
                }
            want[((b * ho + oy) * wo + ox) * cout + o] = float(s);
          }
    const auto cw = backend.prepare_conv_weight(Tensor::from_f32({cout, cin, kk, kk}, wt), Tensor::from_f32({cout}, bias));
    EXPECT_CLOSE(backend.conv2d(up({n, h, w, cin}, x), cw, p), (Shape{n, ho, wo, cout}), want);

    // The same convolution at every third output position only (sparse execution).
    std::vector<std::int64_t> at;
    for (std::int64_t i = 1; i < ho * wo; i += 3) at.push_back(i);
    Values want_at;
    for (std::int64_t b = 0; b < n; ++b)
      for (auto i : at) want_at.insert(want_at.end(), want.begin() + (b * ho * wo + i) * cout, want.begin() + (b * ho * wo + i + 1) * cout);
    const auto positions = backend.upload(Tensor::from_i64({static_cast<std::int64_t>(at.size())}, at));
    EXPECT_CLOSE(backend.conv2d_at(up({n, h, w, cin}, x), cw, p, positions),
                 (Shape{n, static_cast<std::int64_t>(at.size()), cout}), want_at);
  }

  // The fused residual ops are their two-op compositions: the same values bit for bit on this backend
  // (the CUDA backend's fused passes are checked against these in test_cuda_gemm).
  void linear_add_and_conv2d_add() {
    const auto exact = [&](const DeviceTensor& got, const DeviceTensor& want) {
      QCOMPARE(got.shape(), want.shape());
      const auto g = backend.download(got).to_f32(), w = backend.download(want).to_f32();
      QVERIFY(g == w);
    };
    const auto x = up({2, 5, 7}, random_values(70, 60)), weight = up({9, 7}, random_values(63, 61));
    const auto bias = up({9}, random_values(9, 62)), residual = up({2, 5, 9}, random_values(90, 63));
    exact(backend.linear_add(x, weight, bias, residual), backend.add(backend.linear(x, weight, bias), residual));
    exact(backend.linear_add(x, weight, DeviceTensor(), residual), backend.add(backend.linear(x, weight, DeviceTensor()), residual));
    EXPECT_ERROR(backend.linear_add(x, weight, bias, up({2, 5, 8}, random_values(80, 64))));
    EXPECT_ERROR(backend.linear_add(x, weight, bias, residual.reshaped({10, 9})));

    const auto image = up({2, 6, 5, 3}, random_values(180, 65));
    const auto cw = backend.prepare_conv_weight(Tensor::from_f32({4, 3, 3, 3}, random_values(108, 66)),
                                                Tensor::from_f32({4}, random_values(4, 67)));
    const auto p = Conv2dParams::same(1, 1);
    const auto full = up({2, 6, 5, 4}, random_values(240, 68)), per_sample = up({2, 1, 1, 4}, random_values(8, 69));
    exact(backend.conv2d_add(image, cw, p, full), backend.add(backend.conv2d(image, cw, p), full));
    exact(backend.conv2d_add(image, cw, p, per_sample), backend.add(backend.conv2d(image, cw, p), per_sample));
    EXPECT_ERROR(backend.conv2d_add(image, cw, p, up({2, 1, 5, 4}, random_values(40, 70))));
    EXPECT_ERROR(backend.conv2d_add(image, cw, p, up({1, 1, 1, 4}, random_values(4, 71))));
  }

  void gather_scatter_select_positions() {
    const std::int64_t n = 2, l = 11, c = 5;
    const auto x = random_values(n * l * c, 40), base = random_values(n * l * c, 41);
    const std::vector<std::int64_t> at = {0, 3, 4, 10};
    const auto positions = backend.upload(Tensor::from_i64({4}, at));
    Values gathered, scattered = base, selected = base, mask(static_cast<std::size_t>(l), 0.0f);
    for (std::int64_t b = 0; b < n; ++b)
      for (auto i : at) {
        gathered.insert(gathered.end(), x.begin() + (b * l + i) * c, x.begin() + (b * l + i + 1) * c);
        mask[static_cast<std::size_t>(i)] = 1.0f;
      }
    for (std::int64_t b = 0; b < n; ++b)
      for (std::size_t k = 0; k < at.size(); ++k)
        for (std::int64_t j = 0; j < c; ++j) {
          scattered[(b * l + at[k]) * c + j] = gathered[(b * static_cast<std::int64_t>(at.size()) + static_cast<std::int64_t>(k)) * c + j];
          selected[(b * l + at[k]) * c + j] = x[(b * l + at[k]) * c + j];
        }
    const auto g = backend.gather_positions(up({n, l, c}, x), positions);
    EXPECT_CLOSE(g, (Shape{n, 4, c}), gathered);
    EXPECT_CLOSE(backend.scatter_positions(up({n, l, c}, base), g, positions), (Shape{n, l, c}), scattered);
    EXPECT_CLOSE(backend.select_positions(up({l}, mask), up({n, l, c}, x), up({n, l, c}, base)), (Shape{n, l, c}), selected);
    EXPECT_CLOSE(backend.clone(up({n, l, c}, x)), (Shape{n, l, c}), x);
    EXPECT_ERROR(backend.gather_positions(up({n, l, c}, x), backend.upload(Tensor::from_f32({2}, Values{1, 2}))));
    EXPECT_ERROR(backend.scatter_positions(up({n, l, c}, base), g.slice_rows(0, 1), positions));

    // With an addend in the same pass (a residual, or one row per image), and with the inverse map.
    const auto residual = random_values(n * 4 * c, 42), per_image = random_values(n * c, 43);
    const auto inverse = backend.upload(Tensor::from_i64({l}, std::vector<std::int64_t>{0, -1, -1, 1, 2, -1, -1, -1, -1, -1, 3}));
    Values with_residual = base, with_per_image = base;
    for (std::int64_t b = 0; b < n; ++b)
      for (std::size_t k = 0; k < at.size(); ++k)
        for (std::int64_t j = 0; j < c; ++j) {
          const auto row = b * static_cast<std::int64_t>(at.size()) + static_cast<std::int64_t>(k);
          with_residual[(b * l + at[k]) * c + j] = gathered[row * c + j] + residual[row * c + j];
          with_per_image[(b * l + at[k]) * c + j] = gathered[row * c + j] + per_image[b * c + j];
        }
    const auto dr = up({n, 4, c}, residual), dp = up({n, 1, c}, per_image);
    EXPECT_CLOSE(backend.scatter_positions(up({n, l, c}, base), g, positions, &dr, &inverse), (Shape{n, l, c}), with_residual);
    EXPECT_CLOSE(backend.scatter_positions(up({n, l, c}, base), g, positions, &dp), (Shape{n, l, c}), with_per_image);
    const auto wrong = up({n, 2, c}, random_values(n * 2 * c, 44));
    EXPECT_ERROR(backend.scatter_positions(up({n, l, c}, base), g, positions, &wrong));
    EXPECT_ERROR(backend.scatter_positions(up({n, l, c}, base), g, positions, nullptr, &positions));
    // Into base itself: the same values, the other rows untouched; the same checks.
    auto into = up({n, l, c}, base);
    backend.scatter_positions_into(into, g, positions, &dr);
    EXPECT_CLOSE(into, (Shape{n, l, c}), with_residual);
    into = up({n, l, c}, base);
    backend.scatter_positions_into(into, g, positions, &dp);
    EXPECT_CLOSE(into, (Shape{n, l, c}), with_per_image);
    into = up({n, l, c}, base);
    backend.scatter_positions_into(into, g, positions);
    EXPECT_CLOSE(into, (Shape{n, l, c}), scattered);
    EXPECT_ERROR(backend.scatter_positions_into(into, g, positions, &wrong));
  }

  // Many gathers into the caller's tensors at once: each as gather_positions makes it; a destination
  // of the wrong shape or more positions than rows are errors.
  void gather_rows_into() {
    const auto a = random_values(2 * 9 * 4, 80), b = random_values(2 * 6 * 16, 81);
    const auto xa = up({2, 9, 4}, a), xb = up({2, 6, 16}, b);
    const auto pa = backend.upload(Tensor::from_i64({3}, std::vector<std::int64_t>{1, 2, 8}));
    const auto pb = backend.upload(Tensor::from_i64({2}, std::vector<std::int64_t>{0, 5}));
    auto da = backend.allocate({2, 3, 4}), db = backend.allocate({2, 2, 16});
    const Backend::RowsAt gathers[] = {{xa, pa, da}, {xb, pb, db}};
    backend.gather_rows_into(gathers);
    QCOMPARE(backend.download(da).to_f32(), backend.download(backend.gather_positions(xa, pa)).to_f32());
    QCOMPARE(backend.download(db).to_f32(), backend.download(backend.gather_positions(xb, pb)).to_f32());
    const Backend::RowsAt wrong_shape[] = {{xa, pa, backend.allocate({2, 2, 4})}};
    EXPECT_ERROR(backend.gather_rows_into(wrong_shape));
    const auto two_rows = up({2, 2, 4}, random_values(16, 82));
    const Backend::RowsAt too_many[] = {{two_rows, pa, backend.allocate({2, 3, 4})}};  // 3 positions of 2 rows
    EXPECT_ERROR(backend.gather_rows_into(too_many));
  }

  // Many scatters in place at once: each destination's rows at positions become the source's rows, the
  // others stay; a source of the wrong shape or more positions than the destination's rows are errors.
  void scatter_rows_into() {
    const auto a = random_values(2 * 3 * 4, 90), b = random_values(2 * 9 * 4, 91), c = random_values(2 * 2 * 16, 92);
    const auto pa = backend.upload(Tensor::from_i64({3}, std::vector<std::int64_t>{1, 2, 8}));
    const auto pc = backend.upload(Tensor::from_i64({2}, std::vector<std::int64_t>{0, 5}));
    auto da = up({2, 9, 4}, b), dc = up({2, 6, 16}, random_values(2 * 6 * 16, 93));
    const auto want_c = backend.download(backend.scatter_positions(dc, up({2, 2, 16}, c), pc)).to_f32();
    const Backend::RowsAt scatters[] = {{up({2, 3, 4}, a), pa, da}, {up({2, 2, 16}, c), pc, dc}};
    backend.scatter_rows_into(scatters);
    auto want_a = b;
    for (int n = 0; n < 2; ++n)
      for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 4; ++k) want_a[(n * 9 + std::array{1, 2, 8}[r]) * 4 + k] = a[(n * 3 + r) * 4 + k];
    QCOMPARE(backend.download(da).to_f32(), want_a);
    QCOMPARE(backend.download(dc).to_f32(), want_c);
    const Backend::RowsAt wrong_shape[] = {{up({2, 2, 4}, random_values(16, 94)), pa, da}};  // 2 rows for 3 positions
    EXPECT_ERROR(backend.scatter_rows_into(wrong_shape));
    const Backend::RowsAt too_many[] = {{up({2, 3, 4}, a), pa, up({2, 2, 4}, random_values(16, 95))}};  // 3 positions of 2 rows
    EXPECT_ERROR(backend.scatter_rows_into(too_many));
  }

  // A sparse convolution of two inputs' channels: as of their concatenation; channels that do not
  // add up to the weights' are an error.
  void conv2d_at_appended() {
    const std::int64_t n = 2, h = 5, w = 4, own = 3, appended = 5, cout = 6;
    const auto x = random_values(n * h * w * own, 86), y = random_values(n * h * w * appended, 87);
    const auto cw = backend.prepare_conv_weight(Tensor::from_f32({cout, own + appended, 3, 3}, random_values(cout * (own + appended) * 9, 88)),
                                                Tensor::from_f32({cout}, random_values(cout, 89)));
    const auto dx = up({n, h, w, own}, x), dy = up({n, h, w, appended}, y);
    const auto positions = backend.upload(Tensor::from_i64({3}, std::vector<std::int64_t>{0, 7, 19}));
    QCOMPARE(backend.download(backend.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions, nullptr, &dy)).to_f32(),
             backend.download(backend.conv2d_at(backend.concat_channels(dx, dy), cw, Conv2dParams::same(1, 1), positions)).to_f32());
    EXPECT_ERROR(backend.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions, nullptr, &dx));
    EXPECT_ERROR(backend.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions, nullptr, &positions));
  }

  // A sparse convolution with a residual [N, P, Cout]: the convolution plus it; another shape is an error.
  void conv2d_at_residual() {
    const std::int64_t n = 2, h = 5, w = 4, cin = 3, cout = 6;
    const auto cw = backend.prepare_conv_weight(Tensor::from_f32({cout, cin, 3, 3}, random_values(cout * cin * 9, 96)),
                                                Tensor::from_f32({cout}, random_values(cout, 97)));
    const auto dx = up({n, h, w, cin}, random_values(n * h * w * cin, 98));
    const auto positions = backend.upload(Tensor::from_i64({3}, std::vector<std::int64_t>{0, 7, 19}));
    const auto residual = up({n, 3, cout}, random_values(n * 3 * cout, 99));
    const auto plain = backend.download(backend.add(backend.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions), residual));
    EXPECT_CLOSE(backend.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions, nullptr, nullptr, &residual),
                 plain.shape(), plain.to_f32());
    const auto wrong = up({n, 2, cout}, random_values(n * 2 * cout, 100));
    EXPECT_ERROR(backend.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions, nullptr, nullptr, &wrong));
  }

  // Many row copies between tensors of one shape: the rows at positions come from the source, the
  // others stay; a destination of another shape is an error. Poison makes every value NaN.
  void copy_rows_into() {
    const auto a = random_values(2 * 9 * 4, 83), b = random_values(2 * 9 * 4, 84), c = random_values(2 * 5 * 16, 85);
    const auto pa = backend.upload(Tensor::from_i64({3}, std::vector<std::int64_t>{1, 2, 8}));
    const auto pc = backend.upload(Tensor::from_i64({2}, std::vector<std::int64_t>{0, 4}));
    auto da = up({2, 9, 4}, b), dc = backend.allocate({2, 5, 16});
    backend.poison(dc);
    for (const float v : backend.download(dc).to_f32()) QVERIFY(std::isnan(v));
    const Backend::RowsAt copies[] = {{up({2, 9, 4}, a), pa, da}, {up({2, 5, 16}, c), pc, dc}};
    backend.copy_rows_into(copies);
    auto want_a = b;
    for (int n = 0; n < 2; ++n)
      for (const int row : {1, 2, 8})
        for (int k = 0; k < 4; ++k) want_a[(n * 9 + row) * 4 + k] = a[(n * 9 + row) * 4 + k];
    QCOMPARE(backend.download(da).to_f32(), want_a);
    const auto got_c = backend.download(dc).to_f32();
    for (int n = 0; n < 2; ++n)
      for (int row = 0; row < 5; ++row)
        for (int k = 0; k < 16; ++k) {
          const auto i = static_cast<std::size_t>((n * 5 + row) * 16 + k);
          if (row == 0 || row == 4)
            QCOMPARE(got_c[i], c[i]);
          else
            QVERIFY(std::isnan(got_c[i]));  // not copied: still poisoned
        }
    const Backend::RowsAt wrong_shape[] = {{up({2, 9, 4}, a), pa, backend.allocate({2, 8, 4})}};
    EXPECT_ERROR(backend.copy_rows_into(wrong_shape));
  }

  void group_norm_data() {
    QTest::addColumn<int>("groups");
    QTest::addColumn<bool>("silu");
    QTest::newRow("4 groups") << 4 << false;
    QTest::newRow("4 groups + silu") << 4 << true;
    QTest::newRow("3 groups + silu") << 3 << true;
  }
  void group_norm() {
    QFETCH(int, groups);
    QFETCH(bool, silu);
    const std::int64_t n = 2, h = 5, w = 7, c = 12, cg = c / groups;
    auto x = random_values(n * h * w * c, 7);
    for (auto& v : x) v = 3.0f * v + 0.5f;  // a mean and variance far from the normalised ones
    const auto gamma = random_values(c, 8), beta = random_values(c, 9);
    const float eps = 1e-6f;
    Values want(x.size()), want_mean, want_var;
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t g = 0; g < groups; ++g) {
        double s = 0, q = 0, count = double(h * w * cg);
        for (std::int64_t p = 0; p < h * w; ++p)
          for (std::int64_t j = g * cg; j < (g + 1) * cg; ++j) s += x[(b * h * w + p) * c + j];
        const double mean = s / count;
        for (std::int64_t p = 0; p < h * w; ++p)
          for (std::int64_t j = g * cg; j < (g + 1) * cg; ++j) q += std::pow(x[(b * h * w + p) * c + j] - mean, 2);
        const double var = q / count;
        want_mean.push_back(float(mean));
        want_var.push_back(float(var));
        for (std::int64_t p = 0; p < h * w; ++p)
          for (std::int64_t j = g * cg; j < (g + 1) * cg; ++j) {
            const auto i = (b * h * w + p) * c + j;
            const float y = float((x[i] - mean) / std::sqrt(var + eps) * gamma[j] + beta[j]);
            want[i] = silu ? reference_activation(y, Activation::silu) : y;
          }
      }
    const auto dx = up({n, h, w, c}, x), dg = up({c}, gamma), db = up({c}, beta);
    GroupNormStats stats;
    EXPECT_CLOSE(backend.group_norm(dx, dg, db, groups, eps, silu, &stats), (Shape{n, h, w, c}), want);
    EXPECT_CLOSE(stats.mean, (Shape{n, groups}), want_mean);
    EXPECT_CLOSE(stats.var, (Shape{n, groups}), want_var);
    // Given statistics replace computed ones: normalising other data with x's statistics.
    const auto other = up({n, h, w, c}, random_values(n * h * w * c, 10));
    const auto with_stats = backend.group_norm(other, dg, db, groups, eps, silu, nullptr, &stats);
    const auto other_v = backend.download(other).to_f32();
    Values want_other(other_v.size());
    for (std::size_t i = 0; i < other_v.size(); ++i) {
      const auto j = static_cast<std::int64_t>(i) % c, b = static_cast<std::int64_t>(i) / (h * w * c);
      const auto g = b * groups + j / cg;
      const float y = float((other_v[i] - want_mean[g]) / std::sqrt(double(want_var[g]) + eps) * gamma[j] + beta[j]);
      want_other[i] = silu ? reference_activation(y, Activation::silu) : y;
    }
    EXPECT_CLOSE(with_stats, (Shape{n, h, w, c}), want_other);
    EXPECT_ERROR(backend.group_norm(dx, dg, db, 5, eps));

    // A sparse convolution with the norm folded into its gather convolves the normalised input: the
    // same values bit for bit, halos and zero padding included.
    const auto cw = backend.prepare_conv_weight(Tensor::from_f32({5, c, 3, 3}, random_values(5 * c * 9, 11)),
                                                Tensor::from_f32({5}, random_values(5, 12)));
    const auto positions = backend.upload(Tensor::from_i64({5}, std::vector<std::int64_t>{0, 3, 6, 20, 34}));
    const InputNorm norm{&dg, &db, &stats, groups, eps, silu};
    const auto fused = backend.conv2d_at(other, cw, Conv2dParams::same(1, 1), positions, &norm);
    const auto unfused = backend.conv2d_at(with_stats, cw, Conv2dParams::same(1, 1), positions);
    QCOMPARE(fused.shape(), (Shape{n, 5, 5}));
    QVERIFY(backend.download(fused).to_f32() == backend.download(unfused).to_f32());
    const InputNorm wrong_groups{&dg, &db, &stats, groups == 4 ? 3 : 4, eps, silu};
    EXPECT_ERROR(backend.conv2d_at(other, cw, Conv2dParams::same(1, 1), positions, &wrong_groups));
  }

  void layer_norm() {
    const std::int64_t rows = 2 * 7, c = 13;
    auto x = random_values(rows * c, 11);
    for (auto& v : x) v = 2.0f * v - 0.7f;
    const auto gamma = random_values(c, 12), beta = random_values(c, 13);
    Values want(x.size());
    for (std::int64_t r = 0; r < rows; ++r) {
      double s = 0, q = 0;
      for (std::int64_t j = 0; j < c; ++j) s += x[r * c + j];
      const double mean = s / c;
      for (std::int64_t j = 0; j < c; ++j) q += std::pow(x[r * c + j] - mean, 2);
      for (std::int64_t j = 0; j < c; ++j)
        want[r * c + j] = float((x[r * c + j] - mean) / std::sqrt(q / c + 1e-5) * gamma[j] + beta[j]);
    }
    EXPECT_CLOSE(backend.layer_norm(up({2, 7, c}, x), up({c}, gamma), up({c}, beta), 1e-5f), (Shape{2, 7, c}), want);
  }

  void attention_data() {
    QTest::addColumn<int>("batch");
    QTest::addColumn<int>("lq");
    QTest::addColumn<int>("lk");
    QTest::addColumn<int>("heads");
    QTest::addColumn<bool>("causal");
    QTest::newRow("self, causal") << 2 << 7 << 7 << 3 << true;
    QTest::newRow("self") << 2 << 7 << 7 << 3 << false;
    QTest::newRow("cross, Lq < Lk") << 2 << 7 << 11 << 2 << false;
    QTest::newRow("cross, Lq > Lk, causal") << 2 << 13 << 5 << 2 << true;
    QTest::newRow("chunked queries") << 1 << 2053 << 2053 << 1 << false;
  }
  void attention() {
    QFETCH(int, batch);
    QFETCH(int, lq);
    QFETCH(int, lk);
    QFETCH(int, heads);
    QFETCH(bool, causal);
    const std::int64_t d = 5, c = heads * d;
    const auto q = random_values(batch * lq * c, 14), k = random_values(batch * lk * c, 15);
    const auto v = random_values(batch * lk * c, 16);
    const float scale = 1.0f / std::sqrt(float(d));
    const auto p = naive_probabilities(q, k, batch, lq, lk, heads, d, scale, causal);
    Values want(q.size());
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t i = 0; i < lq; ++i)
          for (std::int64_t e = 0; e < d; ++e) {
            double o = 0;
            for (std::int64_t j = 0; j < lk; ++j)
              o += p[((b * heads + h) * lq + i) * lk + j] * v[(b * lk + j) * c + h * d + e];
            want[(b * lq + i) * c + h * d + e] = float(o);
          }
    const AttentionParams params{.heads = heads, .scale = scale, .causal = causal};
    const auto out = backend.attention(up({batch, lq, c}, q), up({batch, lk, c}, k), up({batch, lk, c}, v), params);
    EXPECT_CLOSE(out, (Shape{batch, lq, c}), want);
  }

  // Attention split at its probabilities: the probabilities against the naive softmax, and
  // attention_apply(attention_probs(q, k), v) is attention(q, k, v) when nothing is replaced.
  void attention_with_probabilities_data() { attention_data(); }
  void attention_with_probabilities() {
    QFETCH(int, batch);
    QFETCH(int, lq);
    QFETCH(int, lk);
    QFETCH(int, heads);
    QFETCH(bool, causal);
    const std::int64_t d = 5, c = heads * d;
    const auto q = random_values(batch * lq * c, 41), k = random_values(batch * lk * c, 42);
    const auto v = random_values(batch * lk * c, 43);
    const float scale = 1.0f / std::sqrt(float(d));
    const auto p = naive_probabilities(q, k, batch, lq, lk, heads, d, scale, causal);
    const Values want(p.begin(), p.end());
    const AttentionParams params{.heads = heads, .scale = scale, .causal = causal};
    const auto dq = up({batch, lq, c}, q), dk = up({batch, lk, c}, k), dv = up({batch, lk, c}, v);
    const auto probs = backend.attention_probs(dq, dk, params);
    EXPECT_CLOSE(probs, (Shape{batch, heads, lq, lk}), want);
    EXPECT_CLOSE(backend.attention_apply(probs, dv), (Shape{batch, lq, c}),
                 backend.download(backend.attention(dq, dk, dv, params)).to_f32());
  }

  // Replaced columns are the source's, bit for bit, in the chosen batch items only; the rest is probs.
  void replace_attention_columns() {
    const std::int64_t batch = 3, heads = 2, lq = 5, lk = 7, ls = 6;
    const auto p = random_values(batch * heads * lq * lk, 44), src = random_values(heads * lq * ls, 45);
    const std::vector<std::int64_t> columns = {0, -1, 5, 2, -1, -1, 1};
    const auto out = backend.download(backend.replace_attention_columns(
                                          up({batch, heads, lq, lk}, p), up({1, heads, lq, ls}, src),
                                          backend.upload(Tensor::from_i64({lk}, columns)), 1))
                         .to_f32();
    for (std::int64_t b = 0; b < batch; ++b)
      for (std::int64_t row = 0; row < heads * lq; ++row)
        for (std::int64_t j = 0; j < lk; ++j) {
          const auto at = static_cast<std::size_t>((b * heads * lq + row) * lk + j);
          const bool replaced = b == 1 && columns[j] >= 0;
          QCOMPARE(out[at], replaced ? src[static_cast<std::size_t>(row * ls + columns[j])] : p[at]);
        }
    // Checked here: out-of-range columns, a source past the batch, and mismatched shapes.
    const auto dp = up({batch, heads, lq, lk}, p), ds = up({1, heads, lq, ls}, src);
    EXPECT_ERROR(backend.replace_attention_columns(dp, ds, backend.upload(Tensor::from_i64({lk}, std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6})), 0));
    EXPECT_ERROR(backend.replace_attention_columns(dp, ds, backend.upload(Tensor::from_i64({lk}, std::vector<std::int64_t>{-2, 1, 2, 3, 4, 5, 0})), 0));
    EXPECT_ERROR(backend.replace_attention_columns(dp, ds, backend.upload(Tensor::from_i64({lk}, columns)), 3));
    EXPECT_ERROR(backend.replace_attention_columns(dp, ds, backend.upload(Tensor::from_i64({3}, std::vector<std::int64_t>{0, 1, 2})), 0));
    EXPECT_ERROR(backend.replace_attention_columns(dp, up({1, heads, lq + 1, ls}, random_values(heads * (lq + 1) * ls, 46)),
                                                   backend.upload(Tensor::from_i64({lk}, columns)), 0));
    EXPECT_ERROR(backend.attention_apply(dp, up({batch, lk + 1, 4}, random_values(batch * (lk + 1) * 4, 47))));
    EXPECT_ERROR(backend.attention_probs(up({1, 2, 6}, random_values(12, 48)), up({1, 3, 5}, random_values(15, 49)), {.heads = 2}));
  }

  void activations_data() {
    QTest::addColumn<Activation>("act");
    QTest::newRow("silu") << Activation::silu;
    QTest::newRow("gelu") << Activation::gelu;
    QTest::newRow("quick_gelu") << Activation::quick_gelu;
  }
  void activations() {
    QFETCH(Activation, act);
    auto x = random_values(2 * 4999, 17);
    for (auto& v : x) v *= 6.0f;
    Values want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) want[i] = reference_activation(x[i], act);
    EXPECT_CLOSE(backend.activation(up({2, 4999}, x), act), (Shape{2, 4999}), want);
  }

  void geglu() {
    const std::int64_t rows = 2 * 3, f = 7;
    const auto x = random_values(rows * 2 * f, 18);
    Values want(static_cast<std::size_t>(rows * f));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < f; ++j)
        want[r * f + j] = x[r * 2 * f + j] * reference_activation(x[r * 2 * f + f + j], Activation::gelu);
    EXPECT_CLOSE(backend.geglu(up({2, 3, 2 * f}, x)), (Shape{2, 3, f}), want);
  }

  void binary_broadcast_data() {
    QTest::addColumn<QList<qint64>>("b_shape");
    QTest::newRow("same") << QList<qint64>{2, 3, 5, 7};
    QTest::newRow("channels") << QList<qint64>{7};
    QTest::newRow("suffix") << QList<qint64>{5, 7};
    QTest::newRow("per batch and channel") << QList<qint64>{2, 1, 1, 7};
  }
  void binary_broadcast() {
    QFETCH(QList<qint64>, b_shape);
    const Shape as{2, 3, 5, 7};
    Shape bs(b_shape.begin(), b_shape.end()), padded(as.size() - bs.size(), 1);
    padded.insert(padded.end(), bs.begin(), bs.end());
    const auto a = random_values(shape_numel(as), 19), b = random_values(shape_numel(bs), 20);
    Values want_add(a.size()), want_mul(a.size());
    for (std::int64_t i = 0; i < shape_numel(as); ++i) {
      std::int64_t rest = i, bi = 0, stride = 1;
      for (int d = 3; d >= 0; --d) {
        const auto coord = rest % as[d];
        rest /= as[d];
        if (padded[d] != 1) bi += coord * stride;
        stride *= padded[d];
      }
      want_add[i] = a[i] + b[bi];
      want_mul[i] = a[i] * b[bi];
    }
    const auto da = up(as, a), db = up(bs, b);
    EXPECT_CLOSE(backend.add(da, db), as, want_add);
    EXPECT_CLOSE(backend.mul(da, db), as, want_mul);
    EXPECT_ERROR(backend.add(da, up({3}, Values{1, 2, 3})));
    EXPECT_ERROR(backend.add(da, up({2, 1, 5, 1}, random_values(10, 21))));  // broadcast twice: not supported
  }

  void scale() {
    const auto x = random_values(2 * 11, 22);
    Values want(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) want[i] = x[i] * -0.37f;
    EXPECT_CLOSE(backend.scale(up({2, 11}, x), -0.37f), (Shape{2, 11}), want);
  }

  void upsample_nearest2x() {
    const std::int64_t n = 2, h = 3, w = 5, c = 7;
    const auto x = random_values(n * h * w * c, 23);
    Values want(static_cast<std::size_t>(4 * x.size()));
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t y = 0; y < 2 * h; ++y)
        for (std::int64_t xx = 0; xx < 2 * w; ++xx)
          for (std::int64_t j = 0; j < c; ++j)
            want[((b * 2 * h + y) * 2 * w + xx) * c + j] = x[((b * h + y / 2) * w + xx / 2) * c + j];
    EXPECT_CLOSE(backend.upsample_nearest2x(up({n, h, w, c}, x)), (Shape{n, 2 * h, 2 * w, c}), want);
  }

  // Resizing to a skip connection's size: 2x3 -> 5x7 picks source floor(o * in / out) like torch.
  void upsample_nearest_to_size() {
    const std::int64_t n = 2, h = 2, w = 3, c = 3, oh = 5, ow = 7;
    const auto x = random_values(n * h * w * c, 35);
    const std::int64_t src_y[oh] = {0, 0, 0, 1, 1}, src_x[ow] = {0, 0, 0, 1, 1, 2, 2};
    Values want;
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t y = 0; y < oh; ++y)
        for (std::int64_t xx = 0; xx < ow; ++xx)
          for (std::int64_t j = 0; j < c; ++j) want.push_back(x[((b * h + src_y[y]) * w + src_x[xx]) * c + j]);
    EXPECT_CLOSE(backend.upsample_nearest(up({n, h, w, c}, x), oh, ow), (Shape{n, oh, ow, c}), want);
  }

  void concat_and_slice_channels() {
    const std::int64_t rows = 2 * 3 * 5, ca = 4, cb = 7;
    const auto a = random_values(rows * ca, 24), b = random_values(rows * cb, 25);
    Values want, want_slice;
    for (std::int64_t r = 0; r < rows; ++r) {
      want.insert(want.end(), a.begin() + r * ca, a.begin() + (r + 1) * ca);
      want.insert(want.end(), b.begin() + r * cb, b.begin() + (r + 1) * cb);
      want_slice.insert(want_slice.end(), want.end() - cb - 1, want.end() - 2);
    }
    const auto cat = backend.concat_channels(up({2, 3, 5, ca}, a), up({2, 3, 5, cb}, b));
    EXPECT_CLOSE(cat, (Shape{2, 3, 5, ca + cb}), want);
    EXPECT_CLOSE(backend.slice_channels(cat, ca - 1, ca + cb - 2), (Shape{2, 3, 5, cb - 1}), want_slice);
    EXPECT_ERROR(backend.concat_channels(up({2, 3, 5, ca}, a), up({2, 5, 3, cb}, b)));
    EXPECT_ERROR(backend.slice_channels(cat, 3, ca + cb + 1));
  }

  void embedding() {
    const std::int64_t vocab = 11, c = 5;
    const auto table = random_values(vocab * c, 26);
    const std::vector<std::int64_t> ids = {3, 0, 10, 3, 7, 1};
    Values want;
    for (auto id : ids) want.insert(want.end(), table.begin() + id * c, table.begin() + (id + 1) * c);
    const auto dt = up({vocab, c}, table);
    EXPECT_CLOSE(backend.embedding(dt, backend.upload(Tensor::from_i64({2, 3}, ids))), (Shape{2, 3, c}), want);
    const std::vector<std::int64_t> bad = {1, 11};
    EXPECT_ERROR(backend.embedding(dt, backend.upload(Tensor::from_i64({2}, bad))));
  }

  void layout_conversion() {
    const std::int64_t n = 2, c = 3, h = 5, w = 7;
    const auto x = random_values(n * c * h * w, 27);
    Values want(x.size());
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t j = 0; j < c; ++j)
        for (std::int64_t p = 0; p < h * w; ++p) want[(b * h * w + p) * c + j] = x[(b * c + j) * h * w + p];
    const auto nhwc = backend.nchw_to_nhwc(up({n, c, h, w}, x));
    EXPECT_CLOSE(nhwc, (Shape{n, h, w, c}), want);
    EXPECT_CLOSE(backend.nhwc_to_nchw(nhwc), (Shape{n, c, h, w}), x);
  }

  // Work is split differently with 1 and 3 threads (uneven blocks, serial paths): same results.
  void thread_counts_agree() {
    const auto x = random_values(2 * 37 * 29 * 24, 35), wt = random_values(16 * 24 * 9, 36);
    const auto q = random_values(2 * 301 * 24, 37), kv = random_values(2 * 77 * 24, 38);
    const auto gamma = random_values(24, 39), beta = random_values(24, 40);
    std::vector<Values> results;
    for (int threads : {1, 3}) {
      CpuBackend b(threads);
      QCOMPARE(QString::fromStdString(b.name()),
               QString("CPU (float32, %1 thread%2)").arg(threads).arg(threads == 1 ? "" : "s"));
      const auto dx = b.upload(Tensor::from_f32({2, 37, 29, 24}, x));
      const auto cw = b.prepare_conv_weight(Tensor::from_f32({16, 24, 3, 3}, wt), Tensor());
      const auto conv = b.conv2d(b.group_norm(dx, b.upload(Tensor::from_f32({24}, gamma)),
                                              b.upload(Tensor::from_f32({24}, beta)), 4, 1e-5f, true),
                                 cw, Conv2dParams::same(2, 1));
      const auto dkv = b.upload(Tensor::from_f32({2, 77, 24}, kv));
      const auto att = b.attention(b.upload(Tensor::from_f32({2, 301, 24}, q)), dkv, dkv, {.heads = 3, .scale = 0.3f});
      auto r = b.download(conv).to_f32();
      const auto a = b.download(att).to_f32();
      r.insert(r.end(), a.begin(), a.end());
      results.push_back(std::move(r));
    }
    const double err = relative_l2(results[1], results[0]);
    QVERIFY2(err <= 1e-6, qPrintable(QString("1 vs 3 threads: relative L2 %1").arg(err)));
  }

  void shape_errors() {
    const auto x = up({2, 3}, random_values(6, 28));
    EXPECT_ERROR(backend.linear(x, up({4, 5}, random_values(20, 29)), DeviceTensor()));
    EXPECT_ERROR(backend.linear(x, up({4, 3}, random_values(12, 30)), up({5}, random_values(5, 31))));
    EXPECT_ERROR(backend.layer_norm(x, up({2}, Values{1, 1}), up({3}, Values{0, 0, 0}), 1e-5f));
    EXPECT_ERROR(backend.attention(x.reshaped({1, 2, 3}), x.reshaped({1, 2, 3}), x.reshaped({1, 2, 3}), {.heads = 2}));
    EXPECT_ERROR(backend.upsample_nearest2x(x));
    const auto cw = backend.prepare_conv_weight(Tensor::from_f32({1, 2, 3, 3}, random_values(18, 32)), Tensor());
    EXPECT_ERROR(backend.conv2d(up({1, 4, 4, 3}, random_values(48, 33)), cw, Conv2dParams::same(1, 1)));
    EXPECT_ERROR(backend.conv2d(up({1, 2, 2, 2}, random_values(8, 34)), cw, Conv2dParams::same(1, 0)));
  }
};

QTEST_GUILESS_MAIN(TestCpuOps)
#include "test_cpu_ops.moc"
