// GPU: the sparse-execution ops (convolution at positions, gather, scatter, select, clone) and a
// sparse edit on the CUDA backend against the CPU backend.
#include "gpu_test_main.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "core/half.h"
#include "edit/cache_store.h"
#include "pipeline/generation.h"
#include "test_support.h"

#include <QtTest>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

using namespace fisedit;

namespace {

using test::half_random;

using test::relative_l2;

}  // namespace

class TestCudaSparse : public QObject {
  Q_OBJECT

  CpuBackend cpu_;
  std::unique_ptr<CudaBackend> gpu_ = std::make_unique<CudaBackend>();

  // The same op on both backends from the same host inputs; relative L2 of CUDA against CPU.
  template <class Op>
  double compare(Op op) {
    const auto want = cpu_.download(op(static_cast<Backend&>(cpu_))).to_f32();
    const auto got = gpu_->download(op(static_cast<Backend&>(*gpu_))).to_f32();
    if (got.size() != want.size()) return INFINITY;
    return relative_l2(got, want);
  }

private slots:
  void conv2d_at_data() {
    QTest::addColumn<int>("cin");
    QTest::addColumn<int>("cout");
    QTest::addColumn<int>("stride");
    QTest::newRow("4 -> 32") << 4 << 32 << 1;     // conv_in: padded input channels
    QTest::newRow("320 -> 320") << 320 << 320 << 1;
    QTest::newRow("64 -> 4") << 64 << 4 << 1;     // conv_out: padded output channels
    QTest::newRow("64 -> 64 stride 2") << 64 << 64 << 2;
  }

  void conv2d_at() {
    QFETCH(int, cin);
    QFETCH(int, cout);
    QFETCH(int, stride);
    const std::int64_t n = 2, h = 13, w = 10;
    const auto x = half_random(n * h * w * cin, 1), wt = half_random(std::int64_t{cout} * cin * 9, 2);
    const auto bias = half_random(cout, 3);
    const std::int64_t ho = (h - 1) / stride + 1, wo = (w - 1) / stride + 1;
    std::vector<std::int64_t> at;
    for (std::int64_t i = 0; i < ho * wo; i += 2) at.push_back(i);
    const auto p = static_cast<std::int64_t>(at.size());
    const auto residual = half_random(n * p * cout, 4);
    for (const bool with_residual : {false, true}) {  // the residual in the GEMM's epilogue (or after, padded)
      const double err = compare([&](Backend& b) {
        const auto cw = b.prepare_conv_weight(Tensor::from_f32({cout, cin, 3, 3}, wt), Tensor::from_f32({cout}, bias));
        const auto r = b.upload(Tensor::from_f32({n, p, cout}, residual));
        return b.conv2d_at(b.upload(Tensor::from_f32({n, h, w, cin}, x)), cw, Conv2dParams::same(stride, 1),
                           b.upload(Tensor::from_i64({p}, at)), nullptr, nullptr, with_residual ? &r : nullptr);
      });
      QVERIFY2(err <= 1e-2, qPrintable(QString::number(err) + (with_residual ? " with a residual" : "")));
    }
  }

  void conv2d_at_input_norm_data() {
    QTest::addColumn<int>("cin");
    QTest::addColumn<int>("groups");
    QTest::addColumn<bool>("silu");
    QTest::newRow("320, 32 groups + silu") << 320 << 32 << true;  // 10 channels a group: groups straddle 8-channel loads
    QTest::newRow("64, 32 groups") << 64 << 32 << false;
    QTest::newRow("12, 4 groups + silu") << 12 << 4 << true;     // the scalar gather (padded channels)
    QTest::newRow("3200, 32 groups + silu") << 3200 << 32 << true;  // wider than any U-Net level
  }

  // The GroupNorm folded into the sparse convolution's gather: on the GPU the same halves as
  // normalising first (group_norm with the statistics, then conv2d_at), and close to the CPU backend.
  void conv2d_at_input_norm() {
    QFETCH(int, cin);
    QFETCH(int, groups);
    QFETCH(bool, silu);
    const std::int64_t n = 2, h = 11, w = 9, cout = 16;
    auto x = half_random(n * h * w * cin, 21);
    for (auto& v : x) v = 2.0f * v + 0.5f;
    const auto wt = half_random(cout * cin * 9, 22), bias = half_random(cout, 23);
    const auto gamma = half_random(cin, 24), beta = half_random(cin, 25), stats_of = half_random(n * h * w * cin, 26);
    std::vector<std::int64_t> at;
    for (std::int64_t i = 0; i < h * w; i += 3) at.push_back(i);
    const auto run = [&](Backend& b, bool fused) {
      const auto cw = b.prepare_conv_weight(Tensor::from_f32({cout, cin, 3, 3}, wt), Tensor::from_f32({cout}, bias));
      const auto dg = b.upload(Tensor::from_f32({cin}, gamma)), db = b.upload(Tensor::from_f32({cin}, beta));
      GroupNormStats stats;  // of other data, as an edit's cached statistics are
      b.group_norm(b.upload(Tensor::from_f32({n, h, w, cin}, stats_of)), dg, db, groups, 1e-5f, false, &stats);
      const auto dx = b.upload(Tensor::from_f32({n, h, w, cin}, x));
      const auto positions = b.upload(Tensor::from_i64({static_cast<std::int64_t>(at.size())}, at));
      if (!fused)
        return b.conv2d_at(b.group_norm(dx, dg, db, groups, 1e-5f, silu, nullptr, &stats), cw, Conv2dParams::same(1, 1),
                           positions);
      const InputNorm norm{&dg, &db, &stats, groups, 1e-5f, silu};
      return b.conv2d_at(dx, cw, Conv2dParams::same(1, 1), positions, &norm);
    };
    const auto fused = gpu_->download(run(*gpu_, true)).to_f32();
    QVERIFY(fused == gpu_->download(run(*gpu_, false)).to_f32());
    const double err = relative_l2(fused, cpu_.download(run(cpu_, true)).to_f32());
    QVERIFY2(err <= 1e-2, qPrintable(QString::number(err)));
  }

  void conv2d_at_appended_data() {
    QTest::addColumn<int>("own");
    QTest::addColumn<int>("appended");
    QTest::addColumn<int>("kernel");
    QTest::newRow("320 + 320, 3x3") << 320 << 320 << 3;  // 20 channels a group: one straddles the two inputs
    QTest::newRow("640 + 320, 1x1") << 640 << 320 << 1;  // an up block's conv_shortcut
    QTest::newRow("8 + 4, 3x3") << 8 << 4 << 3;          // the scalar gather
  }

  // A sparse convolution of two inputs' channels (the up path's skip connections) without their
  // concatenation: the same halves as of the concatenation, through the GroupNorm folded in or not.
  void conv2d_at_appended() {
    QFETCH(int, own);
    QFETCH(int, appended);
    QFETCH(int, kernel);
    const std::int64_t n = 2, h = 11, w = 9, cout = 16, cin = own + appended;
    const auto x = half_random(n * h * w * own, 31), y = half_random(n * h * w * appended, 32);
    const auto wt = half_random(cout * cin * kernel * kernel, 33), bias = half_random(cout, 34);
    const auto gamma = half_random(cin, 35), beta = half_random(cin, 36), stats_of = half_random(n * h * w * cin, 37);
    std::vector<std::int64_t> at;
    for (std::int64_t i = 1; i < h * w; i += 3) at.push_back(i);
    Backend& b = *gpu_;
    const auto cw = b.prepare_conv_weight(Tensor::from_f32({cout, cin, kernel, kernel}, wt), Tensor::from_f32({cout}, bias));
    const auto dg = b.upload(Tensor::from_f32({cin}, gamma)), db = b.upload(Tensor::from_f32({cin}, beta));
    GroupNormStats stats;
    b.group_norm(b.upload(Tensor::from_f32({n, h, w, cin}, stats_of)), dg, db, 4, 1e-5f, false, &stats);
    const auto dx = b.upload(Tensor::from_f32({n, h, w, own}, x)), dy = b.upload(Tensor::from_f32({n, h, w, appended}, y));
    const auto positions = b.upload(Tensor::from_i64({static_cast<std::int64_t>(at.size())}, at));
    const InputNorm norm{&dg, &db, &stats, 4, 1e-5f, true};
    const auto params = Conv2dParams::same(1, kernel / 2);
    for (const bool normed : {false, true}) {
      const auto joined = b.conv2d_at(b.concat_channels(dx, dy), cw, params, positions, normed ? &norm : nullptr);
      const auto apart = b.conv2d_at(dx, cw, params, positions, normed ? &norm : nullptr, &dy);
      QVERIFY2(b.download(apart).to_f32() == b.download(joined).to_f32(), normed ? "with the norm" : "without");
    }
    const auto wider = b.allocate({n, h, w, appended + 8});
    QVERIFY_THROWS_EXCEPTION(Error, b.conv2d_at(dx, cw, params, positions, nullptr, &wider));  // channels that do not add up
  }

  void gather_scatter_select_clone() {
    const std::int64_t n = 2, l = 37, c = 24;
    const auto x = half_random(n * l * c, 4), base = half_random(n * l * c, 5);
    const std::vector<std::int64_t> at = {0, 5, 6, 7, 20, 36};
    std::vector<float> mask(static_cast<std::size_t>(l), 0.0f);
    for (auto i : at) mask[static_cast<std::size_t>(i)] = 1.0f;
    const auto ids = [&](Backend& b) { return b.upload(Tensor::from_i64({6}, at)); };
    const auto up = [&](Backend& b, const std::vector<float>& v) { return b.upload(Tensor::from_f32({n, l, c}, v)); };
    QCOMPARE(compare([&](Backend& b) { return b.gather_positions(up(b, x), ids(b)); }), 0.0);
    QCOMPARE(compare([&](Backend& b) { return b.scatter_positions(up(b, base), b.gather_positions(up(b, x), ids(b)), ids(b)); }), 0.0);
    // The same through the inverse map, and with an addend (a residual, or a row per image) in the pass.
    std::vector<std::int64_t> inverse_of(static_cast<std::size_t>(l), -1);
    for (std::size_t k = 0; k < at.size(); ++k) inverse_of[static_cast<std::size_t>(at[k])] = static_cast<std::int64_t>(k);
    const auto residual = half_random(n * 6 * c, 8), per_image = half_random(n * c, 9);
    for (const bool image_rows : {false, true})
      for (const bool with_inverse : {false, true}) {
        const double err = compare([&](Backend& b) {
          const auto inverse = b.upload(Tensor::from_i64({l}, inverse_of));
          const auto addend = image_rows ? b.upload(Tensor::from_f32({n, 1, c}, per_image))
                                         : b.upload(Tensor::from_f32({n, 6, c}, residual));
          return b.scatter_positions(up(b, base), b.gather_positions(up(b, x), ids(b)), ids(b), &addend,
                                     with_inverse ? &inverse : nullptr);
        });
        QVERIFY2(err <= 1e-3, qPrintable(QStringLiteral("per image %1, inverse %2: %3").arg(image_rows).arg(with_inverse).arg(err)));
      }
    // Into base itself: the same rows as the copying scatter, bit for bit, with and without an addend.
    for (const bool with_addend : {false, true}) {
      const auto addend_of = [&](Backend& b) { return b.upload(Tensor::from_f32({n, 1, c}, per_image)); };
      const double err = compare([&](Backend& b) {
        auto target = up(b, base);
        const auto addend = addend_of(b);
        b.scatter_positions_into(target, b.gather_positions(up(b, x), ids(b)), ids(b), with_addend ? &addend : nullptr);
        return target;
      });
      QVERIFY2(err <= 1e-3, qPrintable(QStringLiteral("into, addend %1: %2").arg(with_addend).arg(err)));
      auto into = up(*gpu_, base);
      const auto addend = addend_of(*gpu_);
      const auto values = gpu_->gather_positions(up(*gpu_, x), ids(*gpu_));
      gpu_->scatter_positions_into(into, values, ids(*gpu_), with_addend ? &addend : nullptr);
      const auto copied = gpu_->scatter_positions(up(*gpu_, base), values, ids(*gpu_), with_addend ? &addend : nullptr);
      QCOMPARE(gpu_->download(into).to_f32(), gpu_->download(copied).to_f32());
    }
    // Row copies between whole tensors, batched (and one by one for 5 channels): the CPU's rows.
    const auto x5 = half_random(n * l * 5, 6), base5 = half_random(n * l * 5, 7);
    const auto up5 = [&](Backend& b, const std::vector<float>& v) { return b.upload(Tensor::from_f32({n, l, 5}, v)); };
    for (const bool five : {false, true})
      QCOMPARE(compare([&](Backend& b) {
                 auto into = five ? up5(b, base5) : up(b, base);
                 const Backend::RowsAt copies[] = {{five ? up5(b, x5) : up(b, x), ids(b), into}};
                 b.copy_rows_into(copies);
                 return into;
               }),
               0.0);
    // Scatters in place, batched (and one by one for 5 channels): the CPU's rows.
    for (const bool five : {false, true})
      QCOMPARE(compare([&](Backend& b) {
                 auto into = five ? up5(b, base5) : up(b, base);
                 const auto rows = b.gather_positions(five ? up5(b, x5) : up(b, x), ids(b));
                 const Backend::RowsAt scatters[] = {{rows, ids(b), into}};
                 b.scatter_rows_into(scatters);
                 return into;
               }),
               0.0);
    auto poisoned = gpu_->allocate({n, l, c});
    gpu_->poison(poisoned);
    for (const float v : gpu_->download(poisoned).to_f32()) QVERIFY(std::isnan(v));
    QCOMPARE(compare([&](Backend& b) { return b.select_positions(b.upload(Tensor::from_f32({l}, mask)), up(b, x), up(b, base)); }), 0.0);
    QCOMPARE(compare([&](Backend& b) { return b.clone(up(b, x)); }), 0.0);
    // 5 channels: the copy-then-scatter fallback of the one-pass merge.
    QCOMPARE(compare([&](Backend& b) { return b.scatter_positions(up5(b, base5), b.gather_positions(up5(b, x5), ids(b)), ids(b)); }), 0.0);
  }

  // An edit on the GPU keeps the image outside its region byte for byte, and its sparse layers agree
  // with the dense reference route.
  void edit_on_the_gpu() {
    auto model = std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));
    StableDiffusion sd(model, *gpu_);
    const auto base = sd.generate_cached({"a photo of a cat", "", 3, 8, 7.5f, "dpmpp2m", 192, 128, std::nullopt});
    EditRequest e{.prompt = "a photo of a cat wearing a hat"};
    e.detect_steps = 2;
    const auto sparse = sd.edit(base, e);
    e.dense_reference = true;
    const auto reference = sd.edit(base, e);
    QCOMPARE(sparse.mask.values, reference.mask.values);
    const double err = relative_l2(sparse.generation.latents.back(), reference.generation.latents.back());
    qInfo("edit fraction %.3f, sparse vs dense reference: relative L2 %.3g", sparse.stats.edit_fraction, err);
    QVERIFY2(err <= 1e-2, qPrintable(QString::number(err)));
    int changed = 0;
    for (std::size_t p = 0; p < sparse.changed_region.pixels.size(); ++p)
      if (sparse.changed_region.pixels[p] == 0)
        for (int c = 0; c < 3; ++c) changed += base.result.image.pixels[p * 3 + c] != sparse.generation.result.image.pixels[p * 3 + c];
    QCOMPARE(changed, 0);
  }

  // Batched device copies: more pairs than one launch carries, sizes that are no multiple of 16 bytes,
  // sources and destinations at odd byte offsets.
  void copy_into_many_pairs() {
    std::mt19937 rng(11);
    const auto block = [&](std::int64_t bytes) {
      std::vector<std::int64_t> v(static_cast<std::size_t>(bytes));
      for (auto& x : v) x = static_cast<std::int64_t>(rng() % 251);
      return v;
    };
    const auto src_block = gpu_->upload(Tensor::from_i64({300000}, block(300000)));  // I32 on the device
    auto dst_block = gpu_->allocate(DType::i32, {300000});
    std::vector<Backend::TensorCopy> copies;
    std::int64_t at = 0;
    for (int k = 0; k < 300; ++k) {
      const std::int64_t n = 1 + (k * 37) % 700 + (k % 7 == 0 ? 20000 : 0);
      const auto bytes = static_cast<std::size_t>(at) * 4 + static_cast<std::size_t>(k % 3);  // odd offsets as U8 views
      copies.push_back({src_block.view(bytes, DType::u8, {n}), dst_block.view(bytes + 1, DType::u8, {n})});
      at += (n + 4) / 4 + 1;
    }
    QVERIFY(at < 300000);
    gpu_->copy_into(copies);
    gpu_->synchronize();
    std::vector<std::uint8_t> src(300000 * 4), dst(300000 * 4);
    QCOMPARE(cudaMemcpy(src.data(), src_block.data(), src.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    QCOMPARE(cudaMemcpy(dst.data(), dst_block.data(), dst.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    for (const auto& c : copies) {
      const auto s0 = c.src.offset(), d0 = c.dst.offset();
      for (std::int64_t i = 0; i < c.src.numel(); ++i)
        if (src[s0 + static_cast<std::size_t>(i)] != dst[d0 + static_cast<std::size_t>(i)])
          QFAIL(qPrintable(QStringLiteral("copy at %1, byte %2 differs").arg(s0).arg(i)));
    }
    // Mismatched pairs are refused before anything is queued.
    const std::vector<Backend::TensorCopy> bad{{src_block.view(0, DType::u8, {8}), dst_block.view(0, DType::u8, {9})}};
    QVERIFY_THROWS_EXCEPTION(Error, gpu_->copy_into(bad));
  }

  // A recording replays its ops on whatever its inputs hold at the time, and keeps the memory its ops
  // allocated; an op that cannot be recorded (a download) leaves no recording and no error behind.
  void record_and_replay() {
    const std::int64_t n = 4096;
    auto a = gpu_->allocate({n}), b = gpu_->allocate({n});
    DeviceTensor out;
    auto recording = gpu_->record([&] { out = gpu_->scale(gpu_->add(gpu_->activation(a, Activation::silu), b), 0.5f); });
    QVERIFY(recording);
    for (int round = 0; round < 3; ++round) {
      const auto av = half_random(n, 20 + round), bv = half_random(n, 40 + round);
      const std::vector<Backend::TensorCopy> in{{gpu_->upload(Tensor::from_f32({n}, av)), a},
                                               {gpu_->upload(Tensor::from_f32({n}, bv)), b}};
      gpu_->copy_into(in);
      // Memory freed now must not be handed to anything the recording still writes.
      auto other = gpu_->upload(Tensor::from_f32({n}, std::vector<float>(static_cast<std::size_t>(n), 7.0f)));
      recording->replay();
      const auto got = gpu_->download(out).to_f32();
      const auto want = cpu_.download(cpu_.scale(cpu_.add(cpu_.activation(cpu_.upload(Tensor::from_f32({n}, av)), Activation::silu),
                                                          cpu_.upload(Tensor::from_f32({n}, bv))),
                                                 0.5f))
                            .to_f32();
      QVERIFY2(relative_l2(got, want) < 2e-3, qPrintable(QString::number(relative_l2(got, want))));
      QCOMPARE(gpu_->download(other).to_f32()[0], 7.0f);
    }
    std::string why;
    QVERIFY(!gpu_->record([&] { gpu_->download(a); }, &why));
    QVERIFY(!why.empty());
    qInfo("a download cannot be recorded: %s", why.c_str());
    QCOMPARE(gpu_->download(gpu_->scale(a, 1.0f)).numel(), n);  // the stream works on
    gpu_->set_profiling(true);
    QVERIFY(!gpu_->record([&] { gpu_->scale(a, 2.0f); }));
    gpu_->set_profiling(false);
  }

  // Sparse steps replayed from one recording give the edit that stepping op by op gives, bit for bit:
  // latents, image and every record entry; also spilled, also an edit of the edit, also with a mask
  // that covers whole levels.
  void replayed_edit_equals_the_stepwise_edit() {
    auto model = std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));
    StableDiffusion sd(model, *gpu_);
    const auto base = sd.generate_cached({"a photo of a cat", "", 3, 8, 7.5f, "dpmpp2m", 192, 128, std::nullopt});
    // Entries as wholes: a replayed step keeps the rows it computed over the base's entries (row deltas).
    const auto records_equal = [&](const CachedGeneration& gx, const CachedGeneration& gy) {
      for (std::size_t i = 0; i < gx.steps.size(); ++i) {
        const LayerRecord x = materialize(*gpu_, gx.steps[i]), y = materialize(*gpu_, gy.steps[i]);
        for (std::size_t k = 0; k < x.outputs.size(); ++k)
          if (gpu_->download(x.outputs[k]).to_f32() != gpu_->download(y.outputs[k]).to_f32()) {
            qWarning("step %zu, output %zu differs", i, k);
            return false;
          }
        for (std::size_t k = 0; k < x.norm_stats.size(); ++k)
          if (gpu_->download(x.norm_stats[k].mean).to_f32() != gpu_->download(y.norm_stats[k].mean).to_f32() ||
              gpu_->download(x.norm_stats[k].var).to_f32() != gpu_->download(y.norm_stats[k].var).to_f32()) {
            qWarning("step %zu, statistics %zu differ", i, k);
            return false;
          }
      }
      return true;
    };
    EditRequest e{.prompt = "a photo of a cat wearing a hat"};
    e.detect_steps = 1;
    for (const bool spilled : {false, true})
      for (const double fraction : {0.05, 0.6}) {
        sd.set_cache_device_budget(spilled ? std::optional<std::size_t>(0) : std::nullopt);
        const auto b0 = spilled ? sd.generate_cached(base.request) : base;
        LatentMask mask{16, 24, std::vector<float>(16 * 24, 0.0f)};
        for (std::int64_t y = 0; y < 16; ++y)
          for (std::int64_t x = 0; x < 24; ++x)
            if (y * 24 + x < static_cast<std::int64_t>(fraction * 16 * 24) && (x < 5 || fraction > 0.5))
              mask.values[static_cast<std::size_t>(y * 24 + x)] = 1.0f;
        e.mask_override = mask;
        sd.set_replay_sparse_steps(true);
        const auto replayed = sd.edit(b0, e);
        sd.set_replay_sparse_steps(false);
        const auto stepwise = sd.edit(b0, e);
        const QString where = QStringLiteral("spilled %1, fraction %2").arg(spilled).arg(fraction);
        QVERIFY2(replayed.stats.replay_note.empty(), replayed.stats.replay_note.c_str());
        QCOMPARE(replayed.stats.replayed_steps, 8 - 1);  // every sparse step, the first one recorded
        QCOMPARE(stepwise.stats.replayed_steps, 0);
        QVERIFY2(replayed.generation.latents == stepwise.generation.latents, qPrintable(where));
        QVERIFY2(replayed.generation.result.image.pixels == stepwise.generation.result.image.pixels, qPrintable(where));
        QVERIFY2(records_equal(replayed.generation, stepwise.generation), qPrintable(where));
        // On the device, the replayed steps keep their sparse layers' rows only: a fraction of the memory
        // of the stepwise edit's whole entries beside the base (spilled, whole entries on the host).
        const auto own_bytes = [&](const CachedGeneration& g) {
          CacheByteCounter counter;
          counter.add(b0.steps);
          const auto before = counter.bytes().device + counter.bytes().host;
          counter.add(g.steps);
          return counter.bytes().device + counter.bytes().host - before;
        };
        const bool with_rows = std::any_of(replayed.generation.steps.begin(), replayed.generation.steps.end(),
                                           [](const LayerRecord& r) { return r.has_deltas(); });
        if (fraction < 0.5) QCOMPARE(with_rows, !spilled);  // 60%: every level runs in full
        QVERIFY(std::none_of(stepwise.generation.steps.begin(), stepwise.generation.steps.end(),
                             [](const LayerRecord& r) { return r.has_deltas(); }));
        if (!spilled && fraction < 0.5)
          QVERIFY2(own_bytes(replayed.generation) * 2 < own_bytes(stepwise.generation),
                   qPrintable(QStringLiteral("%1 against %2 bytes").arg(own_bytes(replayed.generation)).arg(own_bytes(stepwise.generation))));
        // The replayed edit with its sampler's steps on the device (Backend::sampler_step) and on the
        // host: the same latents and image bit for bit.
        const bool on_device = sd.sample_on_device();
        sd.set_replay_sparse_steps(true);
        sd.set_sample_on_device(!on_device);
        const auto other_sampling = sd.edit(b0, e);
        sd.set_sample_on_device(on_device);
        QVERIFY2(other_sampling.generation.latents == replayed.generation.latents, qPrintable(where));
        QVERIFY2(other_sampling.generation.result.image.pixels == replayed.generation.result.image.pixels, qPrintable(where));
        // A painted mask's edit has no detection steps: the device samples from its first step on, so
        // DPM's history starts there (the first step is first order and writes the next one's).
        if (!spilled && fraction < 0.5) {
          EditRequest painted{.prompt = e.prompt, .mask_mode = MaskMode::painted};  // no detection steps
          painted.painted_mask = Image8{192, 128, 1, std::vector<std::uint8_t>(192 * 128)};
          for (int y = 0; y < 128; ++y)
            for (int x = 0; x < 192; ++x)
              painted.painted_mask->pixels[static_cast<std::size_t>(y * 192 + x)] =
                  mask.values[static_cast<std::size_t>(y / 8 * 24 + x / 8)] > 0.0f ? 255 : 0;
          sd.set_replay_sparse_steps(true);
          const auto painted_replayed = sd.edit(b0, painted);
          sd.set_replay_sparse_steps(false);
          const auto painted_stepwise = sd.edit(b0, painted);
          QVERIFY2(painted_replayed.stats.replay_note.empty(), painted_replayed.stats.replay_note.c_str());
          QCOMPARE(painted_replayed.stats.replayed_steps, 8);
          QVERIFY(painted_replayed.generation.latents == painted_stepwise.generation.latents);
          QVERIFY(painted_replayed.generation.result.image.pixels == painted_stepwise.generation.result.image.pixels);
        }
        // The replayed edit's records serve the next edit as the stepwise one's do.
        EditRequest next{.prompt = "a photo of a dog wearing a hat"};
        next.detect_steps = 1;
        sd.set_replay_sparse_steps(true);
        const auto again = sd.edit(replayed.generation, next);
        sd.set_replay_sparse_steps(false);
        const auto again_stepwise = sd.edit(stepwise.generation, next);
        QVERIFY2(again.generation.latents == again_stepwise.generation.latents, qPrintable(where));
        QVERIFY2(records_equal(again.generation, again_stepwise.generation), qPrintable(where));
        // Spilled to host memory (as the history does beyond its device budget), the rows are merged first.
        if (with_rows) {
          LayerRecord moved = replayed.generation.steps.back();
          spill_to_host(*gpu_, moved);
          gpu_->synchronize_copies();
          QVERIFY(!moved.has_deltas());
          const LayerRecord want = materialize(*gpu_, replayed.generation.steps.back());
          for (std::size_t k = 0; k < want.outputs.size(); ++k)
            QVERIFY(gpu_->download(moved.outputs[k]).to_f32() == gpu_->download(want.outputs[k]).to_f32());
        }
      }
    sd.set_cache_device_budget(std::nullopt);
    sd.set_replay_sparse_steps(true);
  }

  // Attention control on the GPU: with the prompt unchanged it reproduces the base exactly (the base
  // and the detection steps take the same explicit-probabilities route, so fp16 rounding cannot
  // seed a noise mask); with a new prompt it still keeps the image outside its region byte for byte.
  void attention_control_on_the_gpu() {
    auto model = std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));
    StableDiffusion sd(model, *gpu_);
    const auto base = sd.generate_cached({"a photo of a cat", "", 3, 8, 7.5f, "dpmpp2m", 192, 128, std::nullopt});
    QVERIFY(!base.steps[0].cross_attention.empty());
    QCOMPARE(base.steps[0].cross_attention[0].dtype(), DType::f16);
    EditRequest same{.prompt = "a photo of a cat"};
    same.attention_control = true;
    const auto unchanged = sd.edit(base, same);
    QCOMPARE(unchanged.stats.attention_control_steps, default_detection_steps(base.request.steps));
    QCOMPARE(unchanged.stats.edit_fraction, 0.0);
    QCOMPARE(unchanged.generation.latents[1], base.latents[1]);

    EditRequest e{.prompt = "a photo of a cat wearing a hat"};
    e.detect_steps = 2;
    e.attention_control = true;
    const auto edit = sd.edit(base, e);
    qInfo("edit fraction with attention control %.3f", edit.stats.edit_fraction);
    QVERIFY(edit.stats.edit_fraction > 0.0 && edit.stats.edit_fraction < 1.0);
    int changed = 0;
    for (std::size_t p = 0; p < edit.changed_region.pixels.size(); ++p)
      if (edit.changed_region.pixels[p] == 0)
        for (int c = 0; c < 3; ++c) changed += base.result.image.pixels[p * 3 + c] != edit.generation.result.image.pixels[p * 3 + c];
    QCOMPARE(changed, 0);
  }
};

FISEDIT_GPU_TEST_MAIN(TestCudaSparse)

#include "test_cuda_sparse.moc"
