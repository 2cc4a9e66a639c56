// Sparse prompt editing on the CPU backend (docs/method.md section 1): the properties that make an edit an
// edit: a full mask is the dense generation with the new prompt, an empty mask the cached image, and
// outside the mask the image and latents stay the previous ones, byte for byte, through chains of
// edits, with every scheduler (Euler ancestral's per-step noise included), CFG and non-square sizes.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "pipeline/generation.h"
#include "edit/cache_store.h"
#include "edit/edit_mask.h"
#include "edit/sparse_step.h"
#include "edit/token_alignment.h"
#include "edit_checks.h"
#include "test_support.h"

#include <QtTest>

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

using namespace fisedit;

namespace {

using test::latents_changed_outside;
using test::pixels_changed_outside;
using test::relative_l2;
using test::solid_mask;

}  // namespace

class TestEdit : public QObject {
  Q_OBJECT

  CpuBackend backend_;
  std::shared_ptr<const LoadedModel> sd2_ =
      std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));

  GenerationRequest base_request(const std::string& scheduler, int width, int height) const {
    return GenerationRequest{"a photo of a cat", "", 11, 8, 7.5f, scheduler, width, height, std::nullopt};
  }

private slots:
  void full_mask_is_the_dense_generation_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::newRow("ddim") << "ddim";
    QTest::newRow("dpmpp2m") << "dpmpp2m";
    QTest::newRow("euler") << "euler";
    // The edit draws the base's per-step noise (same seed, same order): with the whole image
    // re-rendered it is the dense generation with the new prompt.
    QTest::newRow("euler_a") << "euler_a";
    QTest::newRow("dpmpp2m_karras") << "dpmpp2m_karras";
  }

  void full_mask_is_the_dense_generation() {
    QFETCH(QString, scheduler);
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request(scheduler.toStdString(), 128, 192));
    EditRequest e{"a photo of a dog", "", MaskMode::painted, solid_mask(128, 192, 255)};
    const auto edit = sd.edit(base, e);
    auto dense_request = base_request(scheduler.toStdString(), 128, 192);
    dense_request.prompt = "a photo of a dog";
    const auto dense = sd.generate(dense_request);
    const double error = relative_l2(edit.generation.result.latents.to_f32(), dense.latents.to_f32());
    QVERIFY2(error < 1e-5, qPrintable(QString::number(error)));
    QCOMPARE(edit.stats.detect_steps, 0);
    QCOMPARE(edit.stats.edit_fraction, 1.0);
  }

  // From an edit's second sparse step the latents stay on the device and the sampler's step runs there
  // (Backend::sampler_step): the same latents, image and progress reports as the host's steps, bit for
  // bit, for every sampler (DPM's second-order history handed over, Euler ancestral's per-step noise,
  // Euler's scaled input), with and without classifier-free guidance.
  void device_sampling_equals_host_sampling_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<float>("cfg");
    QTest::newRow("dpmpp2m") << "dpmpp2m" << 7.5f;
    QTest::newRow("dpmpp2m_karras no cfg") << "dpmpp2m_karras" << 1.0f;
    QTest::newRow("ddim") << "ddim" << 7.5f;
    QTest::newRow("euler") << "euler" << 7.5f;
    QTest::newRow("euler_a") << "euler_a" << 5.0f;
  }

  void device_sampling_equals_host_sampling() {
    QFETCH(QString, scheduler);
    QFETCH(float, cfg);
    StableDiffusion sd(sd2_, backend_);
    auto request = base_request(scheduler.toStdString(), 128, 192);
    request.cfg_scale = cfg;
    const auto base = sd.generate_cached(request);
    EditRequest e{.prompt = "a photo of a dog"};
    e.detect_steps = 1;
    LatentMask mask{24, 16, std::vector<float>(24 * 16, 0.0f)};
    for (std::size_t p = 0; p < mask.values.size(); ++p) mask.values[p] = p % 16 < 7 && p / 16 > 5 ? 1.0f : 0.0f;
    e.mask_override = mask;
    std::vector<std::vector<float>> reported[2];
    EditResult result[2];
    for (const bool on : {false, true}) {
      sd.set_sample_on_device(on);
      result[on] = sd.edit(base, e, [&](const GenerationProgress& p) {
        QCOMPARE(p.step, static_cast<int>(reported[on].size()) + 1);
        reported[on].emplace_back(p.latents.begin(), p.latents.end());
      });
    }
    sd.set_sample_on_device(StableDiffusion::default_sample_on_device());
    QCOMPARE(reported[1].size(), std::size_t{8});
    QVERIFY(reported[0] == reported[1]);
    QVERIFY(result[0].generation.latents == result[1].generation.latents);
    QVERIFY(result[0].generation.result.image.pixels == result[1].generation.result.image.pixels);
    // The edit did change the region, so the comparison compared sampled values.
    QVERIFY(result[1].generation.latents.back() != base.latents.back());
  }

  // A step sampled on the device that turns non-finite stops the edit with the host's message, naming
  // the step: here the base's cached activations of its last step hold NaN.
  void device_sampling_stops_at_a_non_finite_step() {
    StableDiffusion sd(sd2_, backend_);
    sd.set_sample_on_device(true);
    auto base = sd.generate_cached(base_request("dpmpp2m", 128, 128));
    for (auto& t : base.steps.back().outputs)
      if (!t.empty()) std::fill_n(t.data_as<float>(), t.numel(), std::numeric_limits<float>::quiet_NaN());
    EditRequest e{.prompt = "a photo of a dog"};
    e.detect_steps = 1;
    LatentMask mask{16, 16, std::vector<float>(16 * 16, 0.0f)};
    for (std::size_t p = 0; p < 64; ++p) mask.values[p] = 1.0f;
    e.mask_override = mask;
    try {
      sd.edit(base, e);
      QFAIL("no error");
    } catch (const Error& error) {
      QCOMPARE(error.code(), ErrorCode::invalid_argument);
      QVERIFY2(std::string(error.what()).find("step 8 of 8: the U-Net's prediction turned NaN or infinite") !=
                   std::string::npos,
               error.what());
    }
    sd.set_sample_on_device(StableDiffusion::default_sample_on_device());
  }

  void empty_mask_is_the_cached_image() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("dpmpp2m", 128, 128));
    EditRequest e{"a photo of a dog", "blurry", MaskMode::painted, solid_mask(128, 128, 0)};
    const auto edit = sd.edit(base, e);
    QCOMPARE(edit.generation.latents.back(), base.latents.back());
    QVERIFY(edit.generation.result.image.pixels == base.result.image.pixels);
    QCOMPARE(edit.stats.edit_fraction, 0.0);
  }

  void outside_the_mask_nothing_changes_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<int>("width");
    QTest::addColumn<int>("height");
    QTest::newRow("ddim square") << "ddim" << 128 << 128;
    QTest::newRow("dpmpp2m non-square") << "dpmpp2m" << 192 << 128;
    QTest::newRow("euler non-square") << "euler" << 128 << 192;
    QTest::newRow("euler_a non-square") << "euler_a" << 192 << 128;
    QTest::newRow("euler_karras square") << "euler_karras" << 128 << 128;
  }

  void outside_the_mask_nothing_changes() {
    QFETCH(QString, scheduler);
    QFETCH(int, width);
    QFETCH(int, height);
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request(scheduler.toStdString(), width, height));
    EditRequest e{.prompt = "a photo of a cat wearing a red hat"};
    e.detect_steps = 2;
    const auto edit = sd.edit(base, e);
    QCOMPARE(edit.stats.detect_steps, 2);
    QVERIFY2(edit.stats.edit_fraction > 0.0 && edit.stats.edit_fraction < 1.0,
             qPrintable(QString("edit fraction %1").arg(edit.stats.edit_fraction)));
    QCOMPARE(latents_changed_outside(base, edit), 0);
    QCOMPARE(pixels_changed_outside(base.result.image, edit.generation.result.image, edit.changed_region), 0);
    // Something did change inside.
    QVERIFY(edit.generation.result.image.pixels != base.result.image.pixels);

    // Chained: an edit of the edit keeps the edit's pixels outside its own region.
    EditRequest again{.prompt = "a photo of a cat wearing a blue hat"};
    again.detect_steps = 2;
    const auto chained = sd.edit(edit.generation, again);
    QCOMPARE(latents_changed_outside(edit.generation, chained), 0);
    QCOMPARE(pixels_changed_outside(edit.generation.result.image, chained.generation.result.image, chained.changed_region), 0);
  }

  // Layers run at the active positions only give the image of the obvious route: every layer in full,
  // then the cached values restored outside the mask.
  void sparse_execution_matches_the_dense_reference_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<QString>("model");
    QTest::newRow("tiny-sd2 dpmpp2m") << "dpmpp2m" << "tiny-sd2";
    QTest::newRow("tiny-sd15 ddim") << "ddim" << "tiny-sd15";
    QTest::newRow("tiny-sd15 euler_a") << "euler_a" << "tiny-sd15";
  }

  void sparse_execution_matches_the_dense_reference() {
    QFETCH(QString, scheduler);
    QFETCH(QString, model);
    StableDiffusion sd(std::make_shared<LoadedModel>(load_model(test::reference_dir() / model.toStdString() / "model")),
                       backend_);
    const auto base = sd.generate_cached(base_request(scheduler.toStdString(), 192, 128));
    Image8 painted = solid_mask(192, 128, 0);
    for (int y = 40; y < 90; ++y)
      for (int x = 100; x < 170; ++x) painted.pixels[static_cast<std::size_t>(y) * 192 + x] = 255;
    EditRequest sparse{.prompt = "a photo of a cat wearing a hat", .mask_mode = MaskMode::intersect, .painted_mask = painted};
    sparse.detect_steps = 2;
    auto reference = sparse;
    reference.dense_reference = true;
    const auto a = sd.edit(base, sparse);
    const auto b = sd.edit(base, reference);
    QCOMPARE(a.mask.values, b.mask.values);
    QVERIFY(a.stats.edit_fraction > 0.0);
    const double error = relative_l2(a.generation.latents.back(), b.generation.latents.back());
    QVERIFY2(error < 1e-5, qPrintable(QString::number(error)));
    QCOMPARE(latents_changed_outside(base, a), 0);
    // The edited generation's cache is as complete as a dense one: it can be edited again.
    QCOMPARE(a.generation.cache_bytes(), base.cache_bytes());
    // The cost model's dense fallback: partly covered levels run in full and blend (here every level),
    // and the result is the same.
    auto all_dense = sparse;
    all_dense.dense_levels_up_to = std::int64_t{1} << 30;
    backend_.set_profiling(true);
    const auto c = sd.edit(base, all_dense);
    const auto ops = backend_.profile_report();
    backend_.set_profiling(false);
    QVERIFY(std::none_of(ops.begin(), ops.end(), [](const auto& op) { return op.op == "conv2d_at"; }));
    QVERIFY(std::any_of(ops.begin(), ops.end(), [](const auto& op) { return op.op == "select_positions"; }));
    const double dense_error = relative_l2(c.generation.latents.back(), b.generation.latents.back());
    QVERIFY2(dense_error < 1e-5, qPrintable(QString::number(dense_error)));
    QCOMPARE(latents_changed_outside(base, c), 0);
  }

  // The edit decodes only a crop around its region (crops grow to multiples of 256 pixels: 384x384
  // leaves room for one), with the previous decode's GroupNorm statistics: where the edit fully
  // applies, that is close to decoding the whole edited latent.
  void region_decode_matches_a_full_decode() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("ddim", 384, 384));
    Image8 painted = solid_mask(384, 384, 0);
    for (int y = 96; y < 160; ++y)
      for (int x = 64; x < 128; ++x) painted.pixels[static_cast<std::size_t>(y) * 384 + x] = 255;
    const auto edit = sd.edit(base, EditRequest{.prompt = "a photo of a dog", .mask_mode = MaskMode::painted, .painted_mask = painted});
    QVERIFY2(edit.generation.result.decoded.empty(), "the whole image was decoded, not a crop");
    const auto full = sd.decode_image(edit.generation.result.latents);
    double total = 0;
    int count = 0;
    for (int y = 96; y < 160; ++y)
      for (int x = 64; x < 128; ++x)
        for (int c = 0; c < 3; ++c) {
          const auto i = (static_cast<std::size_t>(y) * 384 + x) * 3 + c;
          total += std::abs(int(full.pixels[i]) - int(edit.generation.result.image.pixels[i]));
          ++count;
        }
    qInfo("region decode vs full decode: mean |difference| %.2f of 255", total / count);
    QVERIFY2(total / count < 8.0, qPrintable(QString::number(total / count)));
    QCOMPARE(pixels_changed_outside(base.result.image, edit.generation.result.image, edit.changed_region), 0);
  }

  void painted_region_limits_the_automatic_mask() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("ddim", 128, 128));
    Image8 painted = solid_mask(128, 128, 0);
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) painted.pixels[static_cast<std::size_t>(y) * 128 + x] = 255;  // top-left quarter
    EditRequest e{"a photo of a dog", "", MaskMode::intersect, painted};
    const auto edit = sd.edit(base, e);
    for (std::int64_t y = 0; y < 16; ++y)
      for (std::int64_t x = 0; x < 16; ++x)
        if (y >= 8 || x >= 8) QCOMPARE(edit.mask.values[static_cast<std::size_t>(y * 16 + x)], 0.0f);
    QCOMPARE(pixels_changed_outside(base.result.image, edit.generation.result.image, edit.changed_region), 0);
  }

  void bad_edit_requests() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("ddim", 128, 128));
    auto expect = [&](EditRequest e, const char* message) {
      try {
        sd.edit(base, e);
        QFAIL("a bad edit was accepted");
      } catch (const Error& error) {
        QCOMPARE(error.code(), ErrorCode::invalid_argument);
        QVERIFY2(QString(error.what()).contains(message), error.what());
      }
    };
    expect(EditRequest{.prompt = "a dog", .mask_mode = MaskMode::painted}, "needs a painted mask");
    expect(EditRequest{"a dog", "", MaskMode::painted, solid_mask(64, 64, 255)}, "the mask is 64x64 but the image is 128x128");
    EditRequest too_many{.prompt = "a dog"};
    too_many.detect_steps = 9;
    expect(too_many, "detection steps (9) exceed the steps (8)");
    expect(EditRequest{.prompt = "a dog", .margin = -1}, "must not be negative");
    CachedGeneration uncached;
    uncached.request = base.request;
    try {
      sd.edit(uncached, EditRequest{.prompt = "a dog"});
      QFAIL("an edit without a cache was accepted");
    } catch (const Error& error) {
      QVERIFY(QString(error.what()).contains("no activation cache"));
    }
  }

  void automatic_mask_finds_the_changed_blob() {
    // Two detection steps that differ most in a 4x3 block of a 12x10 latent, with noise elsewhere.
    const std::int64_t h = 10, w = 12;
    std::vector<std::vector<float>> diffs(2, std::vector<float>(h * w));
    for (int s = 0; s < 2; ++s)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x)
          diffs[s][y * w + x] = (y >= 3 && y < 6 && x >= 5 && x < 9) ? 5.0f + s : 0.1f * float((x * 7 + y * 3 + s) % 5);
    const auto mask = automatic_mask(diffs, h, w, 0);
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x)
        QCOMPARE(mask.values[y * w + x], (y >= 3 && y < 6 && x >= 5 && x < 9) ? 1.0f : 0.0f);
    QCOMPARE(dilate(mask, 1).fraction() > mask.fraction(), true);
    QVERIFY(automatic_mask({std::vector<float>(h * w, 0.0f)}, h, w, 2).empty());
  }

  // A change spread over the image (a new background) re-renders all of it instead of the patches
  // Otsu would cut from a one-humped map; a large but local change keeps its region.
  void automatic_mask_of_a_global_change_is_the_whole_image() {
    const std::int64_t h = 10, w = 12;
    std::vector<std::vector<float>> spread(2, std::vector<float>(h * w)), local(2, std::vector<float>(h * w));
    for (int s = 0; s < 2; ++s)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) {
          const float texture = 0.5f * float((x * 7 + y * 3 + s) % 5);  // 0..2
          spread[s][y * w + x] = 3.0f + texture + (y < 4 ? 1.5f : 0.0f);
          local[s][y * w + x] = (y < 6 && x < 7) ? 4.0f + texture : 0.05f * texture;  // 35% of the latent
        }
    QCOMPARE(automatic_mask(spread, h, w, 0, true).fraction(), 1.0);
    QVERIFY(automatic_mask(spread, h, w, 0, false).fraction() < 1.0);  // off: the thresholded region
    const auto mask = automatic_mask(local, h, w, 0, true);
    for (std::int64_t y = 0; y < h; ++y)
      for (std::int64_t x = 0; x < w; ++x) QCOMPARE(mask.values[y * w + x], (y < 6 && x < 7) ? 1.0f : 0.0f);
  }

  // Attention control (docs/method.md section 3.3) -----------------------------------------------

  void token_alignment_is_the_longest_common_subsequence() {
    using Ids = std::vector<std::int64_t>;
    using Map = std::vector<std::int32_t>;
    // BOS a photo of a cat EOS pad pad pad -> ... with "wearing a hat" added, and with a word swapped.
    const Ids base = {49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0};
    QCOMPARE(token_alignment(base, base), (Map{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
    const Ids added = {49406, 320, 1125, 539, 320, 2368, 3309, 320, 3801, 49407};
    QCOMPARE(token_alignment(base, added), (Map{0, 1, 2, 3, 4, 5, -1, -1, -1, 6}));
    const Ids swapped = {49406, 320, 1125, 539, 320, 1929, 49407, 0, 0, 0};
    QCOMPARE(token_alignment(base, swapped), (Map{0, 1, 2, 3, 4, -1, 6, 7, 8, 9}));
    QCOMPARE(token_alignment(Ids{}, base), Map(base.size(), -1));

    // On random short sequences: a valid alignment (equal ids, increasing on both sides) as long as
    // the longest common subsequence found by brute force.
    std::function<int(const Ids&, std::size_t, const Ids&, std::size_t)> lcs = [&](const Ids& a, std::size_t i, const Ids& b,
                                                                                   std::size_t j) -> int {
      if (i == a.size() || j == b.size()) return 0;
      if (a[i] == b[j]) return 1 + lcs(a, i + 1, b, j + 1);
      return std::max(lcs(a, i + 1, b, j), lcs(a, i, b, j + 1));
    };
    std::mt19937 rng(7);
    for (int trial = 0; trial < 200; ++trial) {
      Ids a(rng() % 9), b(rng() % 9);
      for (auto& x : a) x = rng() % 3;
      for (auto& x : b) x = rng() % 3;
      const auto map = token_alignment(a, b);
      QCOMPARE(map.size(), b.size());
      int pairs = 0, last = -1;
      for (std::size_t j = 0; j < b.size(); ++j) {
        if (map[j] < 0) continue;
        QVERIFY(map[j] > last && static_cast<std::size_t>(map[j]) < a.size());
        QCOMPARE(a[static_cast<std::size_t>(map[j])], b[j]);
        last = map[j];
        ++pairs;
      }
      QCOMPARE(pairs, lcs(a, 0, b, 0));
    }
  }

  // A step with attention control: the conditional item's columns of shared tokens are the cached
  // probabilities, its other columns and the unconditional item are the new ones, and the output is
  // those probabilities applied to the values. The record keeps what was used.
  void controlled_columns_are_the_cached_probabilities() {
    const std::int64_t lq = 6, lk = 5, ls = 4, heads = 2, c = 6;
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    const auto random = [&](Shape shape) {
      std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
      for (auto& x : v) x = dist(rng);
      return backend_.upload(Tensor::from_f32(shape, v));
    };
    const auto q = random({2, lq, c}), k = random({2, lk, c}), v = random({2, lk, c});
    const AttentionParams params{.heads = 2, .scale = 0.7f};
    LayerRecord source;
    source.cross_attention = {random({1, heads, lq, ls})};
    const std::vector<std::int64_t> map = {0, -1, 1, 3, -1};  // new token -> base token
    const auto columns = backend_.upload(Tensor::from_i64({lk}, map));

    RecordLayout layout;
    const ProbsKey key = layout.cross_attention("attn2");
    LayerRecord kept;
    SparseStep step(kept);
    step.explicit_cross_attention(&source, columns);
    step.begin(layout);
    const auto y = backend_.download(step.cross_attention(backend_, key, q, k, v, params)).to_f32();
    step.finish();
    QCOMPARE(kept.cross_attention.size(), std::size_t{1});
    QCOMPARE(kept.cross_attention[0].shape(), (Shape{1, heads, lq, lk}));
    const auto got = backend_.download(kept.cross_attention[0]).to_f32();
    const auto fresh = backend_.download(backend_.attention_probs(q, k, params)).to_f32();  // [2, heads, lq, lk]
    const auto cached = backend_.download(source.cross_attention[0]).to_f32();
    std::vector<float> used = fresh;
    for (std::int64_t row = 0; row < heads * lq; ++row)
      for (std::int64_t j = 0; j < lk; ++j) {
        const auto at = static_cast<std::size_t>(row * lk + j), cond = static_cast<std::size_t>((heads * lq + row) * lk + j);
        const float want = map[j] >= 0 ? cached[static_cast<std::size_t>(row * ls + map[j])] : fresh[cond];
        QCOMPARE(got[at], want);
        used[cond] = want;
      }
    const auto want_y = backend_.download(backend_.attention_apply(backend_.upload(Tensor::from_f32({2, heads, lq, lk}, used)), v)).to_f32();
    QCOMPARE(y, want_y);
    // The unconditional item is plain attention.
    const auto plain = backend_.download(backend_.attention(q, k, v, params)).to_f32();
    const std::size_t half = plain.size() / 2;
    const double uncond_error = relative_l2({y.begin(), y.begin() + half}, {plain.begin(), plain.begin() + half});
    QVERIFY2(uncond_error < 1e-6, qPrintable(QString::number(uncond_error)));
    const double cond_change = relative_l2({y.begin() + half, y.end()}, {plain.begin() + half, plain.end()});
    QVERIFY2(cond_change > 1e-3, qPrintable(QString::number(cond_change)));

    // Without a source nothing is replaced: the recorded probabilities are the new ones.
    LayerRecord recorded;
    SparseStep plain_step(recorded);
    plain_step.explicit_cross_attention();
    plain_step.begin(layout);
    const auto y2 = backend_.download(plain_step.cross_attention(backend_, key, q, k, v, params)).to_f32();
    QVERIFY(relative_l2(y2, plain) < 1e-6);
    const auto kept2 = backend_.download(recorded.cross_attention[0]).to_f32();
    QCOMPARE(kept2, std::vector<float>(fresh.begin() + static_cast<std::ptrdiff_t>(fresh.size() / 2), fresh.end()));
    QCOMPARE(recorded.bytes(), recorded.cross_attention[0].nbytes());

    // A source recorded by a different network (more layers than this one has) is an error.
    source.cross_attention.push_back(source.cross_attention[0]);
    LayerRecord other;
    SparseStep short_step(other);
    short_step.explicit_cross_attention(&source, columns);
    QVERIFY_THROWS_EXCEPTION(Error, short_step.begin(layout));
  }

  // A step's record is keyed by layer: a replay may ask for its entries in any order, each layer
  // gets its own entry, and a layer that did not run (or ran twice) is named.
  void records_are_keyed_by_layer() {
    RecordLayout layout;
    const OutputKey a = layout.output("block.a"), b = layout.output("block.b");
    const NormKey n = layout.norm("block.norm");
    const auto tensor = [&](float value) { return backend_.upload(Tensor::from_f32({1, 2, 2, 1}, std::vector<float>(4, value))); };
    LayerRecord base;
    {
      SparseStep record(base);
      record.begin(layout);
      record.spatial_output(backend_, b, tensor(2.0f), 2, 2);  // b runs before a: the keys decide
      record.spatial_output(backend_, a, tensor(1.0f), 2, 2);
      record.group_norm(backend_, n, tensor(3.0f), backend_.upload(Tensor::from_f32({1}, std::vector<float>{1.0f})),
                        backend_.upload(Tensor::from_f32({1}, std::vector<float>{0.0f})), 1, 1e-5f, false);
      record.finish();
    }
    QCOMPARE(base.outputs.size(), std::size_t{2});
    QCOMPARE(backend_.download(base.outputs[a.index]).to_f32().front(), 1.0f);
    QCOMPARE(backend_.download(base.outputs[b.index]).to_f32().front(), 2.0f);

    // An edit whose mask is empty: every layer takes its cached entry, asked for in another order.
    SparseLevels levels(LatentMask{2, 2, std::vector<float>(4, 0.0f)});
    LayerRecord edited;
    SparseStep replay(base, levels, edited);
    replay.begin(layout);
    QCOMPARE(backend_.download(replay.cached_output(a)).to_f32().front(), 1.0f);
    replay.skip_group_norm(n);
    QCOMPARE(backend_.download(replay.cached_output(b)).to_f32().front(), 2.0f);
    replay.finish();
    QCOMPARE(backend_.download(edited.outputs[b.index]).to_f32().front(), 2.0f);

    // A layer left out is named; a layer run twice is refused.
    LayerRecord partial;
    SparseStep missing(base, levels, partial);
    missing.begin(layout);
    missing.cached_output(a);
    missing.skip_group_norm(n);
    try {
      missing.finish();
      QFAIL("finish() accepted a step that skipped a layer");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("block.b") != std::string::npos, e.what());
    }
    QVERIFY_THROWS_EXCEPTION(Error, missing.cached_output(a));

    // A record of another network (another layer count) is refused before anything runs.
    RecordLayout bigger = layout;
    bigger.output("block.c");
    LayerRecord other;
    SparseStep mismatch(base, levels, other);
    QVERIFY_THROWS_EXCEPTION(Error, mismatch.begin(bigger));
  }

  // A record entry kept as rows over its base's entry (what an edit's replayed step keeps): materialize
  // merges the rows into a new whole entry and shares the others; a step refuses to read an unmerged
  // one, naming the layer; the byte counters count the rows once beside the shared base.
  void row_deltas_merge_into_whole_entries() {
    RecordLayout layout;
    const OutputKey a = layout.output("block.a"), b = layout.output("block.b");
    const std::vector<float> base_a = {1, 2, 3, 4, 5, 6, 7, 8}, base_b = {9, 9, 9, 9};  // [2, 2, 2, 1], [1, 2, 2, 1]
    LayerRecord record;
    record.outputs = {backend_.upload(Tensor::from_f32({2, 2, 2, 1}, base_a)), backend_.upload(Tensor::from_f32({1, 2, 2, 1}, base_b))};
    record.deltas.resize(2);
    QVERIFY(!record.has_deltas());
    record.deltas[a.index] = {backend_.upload(Tensor::from_f32({2, 2, 1}, std::vector<float>{-1, -2, -3, -4})),
                              backend_.upload(Tensor::from_i64({2}, std::vector<std::int64_t>{0, 3}))};
    QVERIFY(record.has_deltas());
    const LayerRecord whole = materialize(backend_, record);
    QVERIFY(!whole.has_deltas());
    QCOMPARE(backend_.download(whole.outputs[a.index]).to_f32(), (std::vector<float>{-1, 2, 3, -2, -3, 6, 7, -4}));
    QCOMPARE(backend_.download(record.outputs[a.index]).to_f32(), base_a);  // the base's entry untouched
    QCOMPARE(whole.outputs[b.index].data(), record.outputs[b.index].data());  // shared, not copied
    QCOMPARE(record.bytes(), whole.bytes() + record.deltas[a.index].rows.nbytes() + record.deltas[a.index].positions.nbytes());

    SparseLevels levels(LatentMask{2, 2, std::vector<float>(4, 0.0f)});
    LayerRecord out;
    SparseStep step(record, levels, out);
    step.begin(layout);
    QCOMPARE(backend_.download(step.cached_output(b)).to_f32(), base_b);  // an entry without rows reads as before
    try {
      step.cached_output(a);
      QFAIL("a step read an entry that holds changed rows only");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("block.a") != std::string::npos, e.what());
    }
    SparseStep merged(whole, levels, out);
    merged.begin(layout);
    QCOMPARE(backend_.download(merged.cached_output(a)).to_f32(), (std::vector<float>{-1, 2, 3, -2, -3, 6, 7, -4}));

    CacheByteCounter counter;
    counter.add(whole);
    const std::size_t whole_bytes = counter.bytes().device;
    counter.add(record);  // base entry a and b already counted: only the rows and positions are new
    QCOMPARE(counter.bytes().device, whole_bytes + base_a.size() * dtype_size(backend_.activation_dtype()) +
                                         record.deltas[a.index].rows.nbytes() + record.deltas[a.index].positions.nbytes());

    LayerRecord misfit = record;  // rows of another width
    misfit.deltas[a.index].rows = backend_.upload(Tensor::from_f32({2, 2, 2}, std::vector<float>(8, 0.0f)));
    QVERIFY_THROWS_EXCEPTION(Error, materialize(backend_, misfit));
  }

  // What a replayed step copies in of an output read near the active positions: the places within
  // two of an active one, the active ones excluded; nothing (read whole) when the level or a
  // neighbouring one runs in full, or when the layer's output is read everywhere (attention keys).
  void near_positions_are_what_a_replay_reads() {
    LatentMask latent{12, 12, std::vector<float>(144, 0.0f)};
    for (const int y : {4, 5})
      for (const int x : {4, 5}) latent.values[static_cast<std::size_t>(y * 12 + x)] = 1.0f;
    SparseLevels levels(latent);  // 12x12, 6x6, 3x3, 2x2 sparse; 1x1 covered
    const auto* near = levels.near_positions(backend_, 12, 12);
    QVERIFY(near != nullptr);
    std::vector<float> want;
    for (int y = 2; y <= 7; ++y)
      for (int x = 2; x <= 7; ++x)
        if (!((y == 4 || y == 5) && (x == 4 || x == 5))) want.push_back(static_cast<float>(y * 12 + x));
    QCOMPARE(backend_.download(*near).to_f32(), want);
    QCOMPARE(levels.plan(backend_, 2, 2), SparseLevels::Plan::sparse);
    QCOMPARE(levels.plan(backend_, 1, 1), SparseLevels::Plan::dense);
    QVERIFY(levels.near_positions(backend_, 2, 2) == nullptr);  // its 1x1 neighbour runs in full
    QVERIFY(levels.near_positions(backend_, 5, 5) == nullptr);  // not a level of this mask
    SparseLevels coarse_dense(latent, 36);                        // 6x6 and smaller run in full
    QVERIFY(coarse_dense.near_positions(backend_, 12, 12) == nullptr);
    SparseLevels ready(latent);  // made ahead (before a recording): later calls find them
    ready.make_ready(backend_);
    const auto* made = ready.near_positions(backend_, 12, 12);
    QVERIFY(made != nullptr && made->data() == ready.near_positions(backend_, 12, 12)->data());
    QCOMPARE(backend_.download(*made).to_f32(), want);

    RecordLayout layout;
    const OutputKey conv = layout.output("block.conv"), keys = layout.output("block.attn1.to_k", RecordLayout::Reads::whole);
    LayerRecord cached;
    cached.outputs = {backend_.upload(Tensor::from_f32({2, 12, 12, 8}, std::vector<float>(2 * 144 * 8, 1.0f))),
                      backend_.upload(Tensor::from_f32({2, 144, 8}, std::vector<float>(2 * 144 * 8, 1.0f)))};
    LayerRecord out;
    SparseStep step(cached, levels, out);
    step.scatter_in_place();
    step.begin(layout);
    const auto values = backend_.upload(Tensor::from_f32({2, 4, 8}, std::vector<float>(64, 2.0f)));
    step.scatter_output(backend_, conv, values, 12, 12);
    step.scatter_output(backend_, keys, values, 12, 12);
    QCOMPARE(backend_.download(step.read_near_positions().at(conv.index)).to_f32(), want);
    QVERIFY(step.read_near_positions().at(keys.index).empty());
    QVERIFY(!step.scattered_positions().at(keys.index).empty());
  }

  // The base keeps its conditional cross-attention probabilities for the default detection steps
  // only, counted in its cache size.
  void cached_generation_keeps_cross_attention_for_detection() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("ddim", 128, 128));
    const int kept = default_detection_steps(8);
    QCOMPARE(kept, 1);  // one per 20 steps, at least one
    for (int i = 0; i < 8; ++i) {
      const auto& step = base.steps[static_cast<std::size_t>(i)];
      QCOMPARE(step.cross_attention.empty(), i >= kept);
      std::size_t probs = 0;
      for (const auto& p : step.cross_attention) {
        QCOMPARE(p.dim(0), std::int64_t{1});
        QCOMPARE(p.dim(3), std::int64_t{77});
        probs += p.nbytes();
      }
      if (i < kept) QVERIFY(step.bytes() > probs && probs > 0);
    }
    QCOMPARE(default_detection_steps(40), 2);
    QCOMPARE(default_detection_steps(100), 5);
  }

  // The first detection step starts from the base's latents: with the base's negative prompt it computes
  // the conditional item alone and takes the unconditional one from the base's record, bit for bit; the
  // conditional item is the whole CFG batch's to rounding, and the edit finds the same region. The
  // second step starts from the edit's own latents and computes both.
  void detection_takes_the_base_unconditional_item() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("dpmpp2m", 128, 128));
    EditRequest e{.prompt = "a photo of a cat wearing a red hat"};
    e.detect_steps = 2;
    const auto reused = sd.edit(base, e);
    sd.set_reuse_unconditional(false);
    const auto whole = sd.edit(base, e);
    QCOMPARE(reused.stats.unconditional_reused_steps, 1);
    QCOMPARE(whole.stats.unconditional_reused_steps, 0);
    const auto& got = reused.generation.steps[0];
    const auto& want = whole.generation.steps[0];
    const auto& cached = base.steps[0];
    QCOMPARE(got.outputs.size(), want.outputs.size());
    QCOMPARE(got.norm_stats.size(), want.norm_stats.size());
    const auto halves = [&](const DeviceTensor& t) {
      const auto v = backend_.download(t).to_f32();
      const auto middle = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
      return std::pair{std::vector<float>(v.begin(), middle), std::vector<float>(middle, v.end())};
    };
    double worst = 0;
    const auto check = [&](const DeviceTensor& g, const DeviceTensor& w, const DeviceTensor& c) {
      QCOMPARE(g.shape(), w.shape());
      const auto [g_uncond, g_cond] = halves(g);
      const auto [w_uncond, w_cond] = halves(w);
      QCOMPARE(g_uncond, halves(c).first);  // the base's, bit for bit
      QCOMPARE(w_uncond, g_uncond);         // and what the whole batch computes again
      worst = std::max(worst, relative_l2(g_cond, w_cond));
    };
    for (std::size_t k = 0; k < got.outputs.size(); ++k) check(got.outputs[k], want.outputs[k], cached.outputs[k]);
    for (std::size_t k = 0; k < got.norm_stats.size(); ++k) {
      check(got.norm_stats[k].mean, want.norm_stats[k].mean, cached.norm_stats[k].mean);
      check(got.norm_stats[k].var, want.norm_stats[k].var, cached.norm_stats[k].var);
    }
    QVERIFY2(worst < 1e-4, qPrintable(QString("conditional item off by %1 (relative L2)").arg(worst)));
    QVERIFY(reused.stats.edit_fraction > 0.0 && reused.stats.edit_fraction < 1.0);
    QCOMPARE(reused.mask.values, whole.mask.values);
    QVERIFY(relative_l2(reused.generation.latents.back(), whole.generation.latents.back()) < 1e-3);

    // Another negative prompt: nothing of the base's is the edit's.
    sd.set_reuse_unconditional(true);
    e.negative_prompt = "blurry";
    QCOMPARE(sd.edit(base, e).stats.unconditional_reused_steps, 0);
  }

  // With an unchanged prompt every column is replaced by itself: attention control changes nothing,
  // and the edit is the cached image (an empty mask), as without control.
  void attention_control_with_the_same_prompt_changes_nothing() {
    StableDiffusion sd(sd2_, backend_);
    const auto base = sd.generate_cached(base_request("dpmpp2m", 128, 128));
    EditRequest e{.prompt = base.request.prompt};
    e.attention_control = true;
    const auto on = sd.edit(base, e);
    e.attention_control = false;
    const auto off = sd.edit(base, e);
    QCOMPARE(on.stats.attention_control_steps, default_detection_steps(base.request.steps));
    QCOMPARE(off.stats.attention_control_steps, 0);
    QCOMPARE(on.generation.latents, off.generation.latents);
    QCOMPARE(on.mask.values, off.mask.values);
    QCOMPARE(on.stats.edit_fraction, 0.0);
    QVERIFY(on.generation.result.image.pixels == base.result.image.pixels);
    // Every detection step ran from the base's latents with the base's conditioning: the base's own
    // steps, taken whole (the same memory).
    QCOMPARE(on.stats.unconditional_reused_steps, on.stats.detect_steps);
    QVERIFY(on.generation.steps[0].outputs[0].data() == base.steps[0].outputs[0].data());
  }

  // An edit with attention control still finds a region and keeps everything outside it; the control
  // changed the detection steps; and the edited generation can be edited with control again.
  void attention_control_edit_keeps_the_outside_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("tiny-sd2") << "tiny-sd2";
    QTest::newRow("tiny-sd15") << "tiny-sd15";
  }
  void attention_control_edit_keeps_the_outside() {
    QFETCH(QString, model);
    StableDiffusion sd(std::make_shared<LoadedModel>(load_model(test::reference_dir() / model.toStdString() / "model")),
                       backend_);
    const auto base = sd.generate_cached(base_request("euler", 192, 128));
    EditRequest e{.prompt = "a photo of a cat wearing a red hat"};
    e.detect_steps = 2;
    e.attention_control = true;
    const auto edit = sd.edit(base, e);
    e.attention_control = false;
    const auto uncontrolled = sd.edit(base, e);
    // Control applies to the detection steps whose base step kept its probabilities.
    QCOMPARE(edit.stats.attention_control_steps, std::min(2, default_detection_steps(base.request.steps)));
    QVERIFY2(edit.stats.edit_fraction > 0.0 && edit.stats.edit_fraction < 1.0,
             qPrintable(QString("edit fraction %1").arg(edit.stats.edit_fraction)));
    QCOMPARE(latents_changed_outside(base, edit), 0);
    QCOMPARE(pixels_changed_outside(base.result.image, edit.generation.result.image, edit.changed_region), 0);
    QVERIFY(edit.generation.latents[1] != uncontrolled.generation.latents[1]);
    qInfo("%s: edit fraction %.3f with attention control, %.3f without", qPrintable(model), edit.stats.edit_fraction,
          uncontrolled.stats.edit_fraction);

    EditRequest again{.prompt = "a photo of a cat wearing a blue hat"};
    again.detect_steps = 2;
    again.attention_control = true;
    const auto chained = sd.edit(edit.generation, again);
    QCOMPARE(chained.stats.attention_control_steps, std::min(2, default_detection_steps(base.request.steps)));
    QCOMPARE(latents_changed_outside(edit.generation, chained), 0);
  }

  // The alpha is made around the mask only, and blended within the crop's box only: the same values
  // as over the whole image (the old way: nearest upscaling, dilation, box blur with the edge
  // replicated), bit for bit, for masks at the image's edges and in its middle, of every feather.
  void alpha_and_composite_around_the_mask_equal_the_whole_image() {
    std::mt19937 rng(5);
    for (const int feather : {0, 1, 3, 8, 20})
      for (int round = 0; round < 6; ++round) {
        const int h = 24 + round * 3, w = 40 - round * 2;
        LatentMask mask{h, w, std::vector<float>(static_cast<std::size_t>(h * w), 0.0f)};
        const int cy = std::uniform_int_distribution<int>(0, h - 1)(rng), cx = std::uniform_int_distribution<int>(0, w - 1)(rng);
        const int r = 1 + round;
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x)
            if ((y - cy) * (y - cy) + (x - cx) * (x - cx) <= r * r || (round == 5 && y == h - 1))
              mask.values[static_cast<std::size_t>(y * w + x)] = 1.0f;
        cv::Mat m(h, w, CV_8U), pixels, whole;
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x) m.at<std::uint8_t>(y, x) = mask.values[static_cast<std::size_t>(y * w + x)] != 0.0f ? 255 : 0;
        cv::resize(m, pixels, {8 * w, 8 * h}, 0, 0, cv::INTER_NEAREST);
        if (feather > 0) {
          cv::dilate(pixels, pixels, cv::getStructuringElement(cv::MORPH_RECT, {2 * feather + 1, 2 * feather + 1}));
          pixels.convertTo(whole, CV_32F, 1.0 / 255.0);
          cv::blur(whole, whole, {2 * feather + 1, 2 * feather + 1}, {-1, -1}, cv::BORDER_REPLICATE);
        } else {
          pixels.convertTo(whole, CV_32F, 1.0 / 255.0);
        }
        const auto alpha = feathered_alpha(mask, feather);
        QCOMPARE(alpha.size(), static_cast<std::size_t>(64 * h * w));
        for (int y = 0; y < 8 * h; ++y)
          for (int x = 0; x < 8 * w; ++x) {
            const float a = whole.at<float>(y, x);
            QCOMPARE(alpha[static_cast<std::size_t>(y) * 8 * w + x], a < 1e-6f ? 0.0f : std::min(a, 1.0f));
          }
        // Blended within the box where alpha > 0, over an image that is the previous one elsewhere.
        Image8 previous{8 * w, 8 * h, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(192 * h * w))};
        Image8 edited = previous;
        for (auto& v : previous.pixels) v = static_cast<std::uint8_t>(rng());
        int x0 = 8 * w, y0 = 8 * h, x1 = 0, y1 = 0;
        for (int y = 0; y < 8 * h; ++y)
          for (int x = 0; x < 8 * w; ++x)
            if (alpha[static_cast<std::size_t>(y) * 8 * w + x] > 0.0f) x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x + 1), y1 = std::max(y1, y + 1);
        for (std::size_t i = 0; i < edited.pixels.size(); ++i) {
          const auto p = i / 3;
          const int y = static_cast<int>(p) / (8 * w), x = static_cast<int>(p) % (8 * w);
          edited.pixels[i] = y >= y0 && y < y1 && x >= x0 && x < x1 ? static_cast<std::uint8_t>(rng()) : previous.pixels[i];
        }
        const auto want = composite(previous, edited, alpha);
        composite_into(edited, previous, alpha, x0, y0, x1, y1);
        QVERIFY(edited.pixels == want.pixels);
      }
  }

  void feathered_alpha_is_exact_at_both_ends() {
    LatentMask mask{4, 4, std::vector<float>(16, 0.0f)};
    mask.values[5] = 1.0f;  // latent (1, 1): pixels 8..15
    const auto alpha = feathered_alpha(mask, 3);
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        const float a = alpha[static_cast<std::size_t>(y) * 32 + x];
        const int distance = std::max({8 - x, x - 15, 8 - y, y - 15, 0});
        if (distance == 0) QCOMPARE(a, 1.0f);
        if (distance > 6) QCOMPARE(a, 0.0f);
        QVERIFY(a >= 0.0f && a <= 1.0f);
      }
  }
};

QTEST_GUILESS_MAIN(TestEdit)
#include "test_edit.moc"
