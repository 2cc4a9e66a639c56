// The activation cache beyond the device budget (docs/method.md section 2.3, edit/cache_store.h) on the CPU
// backend, whose host-resident memory is ordinary memory but is refused by ops all the same: so a
// tensor an edit reads without staging it first is an error here, as it would be a fault on a GPU.
// Spilling changes where the cache lives, never a bit of what an edit computes from it.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "pipeline/edit_session.h"
#include "pipeline/generation.h"
#include "edit/cache_store.h"
#include "test_support.h"

#include <QtTest>

using namespace fisedit;

namespace {

std::vector<float> values(std::int64_t n, float scale) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = scale * static_cast<float>(static_cast<int>(i % 97) - 48);
  return v;
}

// Every tensor of every step: where it lives, and its values.
struct Residency {
  int device = 0, host = 0;
};
Residency residency(const LayerRecord& r) {
  Residency out;
  for (const auto& t : r.outputs) (t.host_resident() ? out.host : out.device)++;
  for (const auto& s : r.norm_stats) {
    (s.mean.host_resident() ? out.host : out.device)++;
    (s.var.host_resident() ? out.host : out.device)++;
  }
  return out;
}

// Whether two generations' records hold the same values, tensor by tensor, bit for bit.
bool same_records(Backend& b, const CachedGeneration& x, const CachedGeneration& y) {
  if (x.steps.size() != y.steps.size()) return false;
  for (std::size_t i = 0; i < x.steps.size(); ++i) {
    const auto &a = x.steps[i], &c = y.steps[i];
    if (a.outputs.size() != c.outputs.size() || a.norm_stats.size() != c.norm_stats.size()) return false;
    for (std::size_t k = 0; k < a.outputs.size(); ++k)
      if (b.download(a.outputs[k]).to_f32() != b.download(c.outputs[k]).to_f32()) return false;
    for (std::size_t k = 0; k < a.norm_stats.size(); ++k)
      if (b.download(a.norm_stats[k].mean).to_f32() != b.download(c.norm_stats[k].mean).to_f32() ||
          b.download(a.norm_stats[k].var).to_f32() != b.download(c.norm_stats[k].var).to_f32())
        return false;
  }
  return true;
}

void compare_edits(const EditResult& got, const EditResult& want) {
  QCOMPARE(got.mask.values, want.mask.values);
  QCOMPARE(got.generation.latents, want.generation.latents);  // every step's, bit for bit
  QCOMPARE(got.generation.result.image.pixels, want.generation.result.image.pixels);
}

// Latent pixels with even row and column: a quarter of the latent, yet every position of every lower
// level (each 2x2 block holds one), so those levels are recomputed in full and their cached outputs
// are never read: the prefetch leaves them in host memory.
Image8 dotted_mask(int width, int height) {
  Image8 m{width, height, 1, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height, 0)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      if ((y / 8) % 2 == 0 && (x / 8) % 2 == 0) m.pixels[static_cast<std::size_t>(y) * width + x] = 255;
  return m;
}

}  // namespace

class TestCacheStore : public QObject {
  Q_OBJECT

  CpuBackend backend_;
  std::shared_ptr<const LoadedModel> sd2_ =
      std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));

  static GenerationRequest request() {
    return GenerationRequest{"a photo of a cat", "", 7, 6, 7.5f, "dpmpp2m", 192, 128, std::nullopt};
  }

private slots:
  void ops_refuse_host_memory_and_copies_move_it() {
    const auto host = backend_.allocate_host(DType::f32, {2, 3, 4});
    QVERIFY(host.host_resident());
    QVERIFY(!backend_.allocate(DType::f32, {2}).host_resident());
    const auto device = backend_.upload(Tensor::from_f32({2, 3, 4}, values(24, 0.5f)));
    const auto before = backend_.copy_counters();
    const Backend::TensorCopy out{device, host};
    backend_.wait(backend_.copy_async(std::span(&out, 1)));
    QCOMPARE(backend_.copy_counters().calls, before.calls + 1);
    QCOMPARE(backend_.copy_counters().bytes, before.bytes + 96);
    QCOMPARE(backend_.download(host).to_f32(), values(24, 0.5f));  // download stages it itself
    // An op given host memory says so instead of reading it.
    QVERIFY_THROWS_EXCEPTION(Error, backend_.scale(host, 2.0f));
    QVERIFY_THROWS_EXCEPTION(Error, backend_.add(device, host));
    QVERIFY_THROWS_EXCEPTION(Error, backend_.clone(host));
    GroupNormStats stats{backend_.allocate_host(DType::f32, {2, 1}), backend_.allocate_host(DType::f32, {2, 1})};
    const auto gamma = backend_.upload(Tensor::from_f32({4}, values(4, 1.0f)));
    QVERIFY_THROWS_EXCEPTION(Error, backend_.group_norm(device, gamma, gamma, 1, 1e-5f, false, nullptr, &stats));
    // Back to the device, and copies must match in dtype and shape.
    const Backend::TensorCopy in{host, backend_.allocate(DType::f32, {2, 3, 4})};
    backend_.wait(backend_.copy_async(std::span(&in, 1)));
    QCOMPARE(backend_.download(backend_.scale(in.dst, 1.0f)).to_f32(), values(24, 0.5f));
    const Backend::TensorCopy bad{host, backend_.allocate(DType::f32, {24})};
    QVERIFY_THROWS_EXCEPTION(Error, backend_.copy_async(std::span(&bad, 1)));
    QVERIFY(backend_.copy_async({}).empty());
  }

  void spill_lays_a_step_out_in_one_block() {
    LayerRecord r;
    r.outputs = {backend_.upload(Tensor::from_f32({1, 4, 4, 3}, values(48, 0.25f))),
                 backend_.upload(Tensor::from_f32({1, 16, 5}, values(80, 0.5f)))};
    r.outputs.push_back(r.outputs[0]);  // the same memory twice: copied once
    r.norm_stats = {{backend_.upload(Tensor::from_f32({1, 2}, values(2, 1.0f))), backend_.upload(Tensor::from_f32({1, 2}, values(2, 2.0f)))}};
    const auto bytes = r.bytes();
    const auto before = backend_.copy_counters();
    QCOMPARE(spill_to_host(backend_, r), std::size_t{48 * 4 + 80 * 4 + 2 * 2 * 4});
    QCOMPARE(backend_.copy_counters().calls, before.calls + 1);  // one batch for the step
    QCOMPARE(r.bytes(), bytes);
    QCOMPARE(residency(r).device, 0);
    const DeviceBuffer* block = r.outputs[0].buffer();
    for (const auto& t : r.outputs) QCOMPARE(t.buffer(), block);
    QCOMPARE(r.outputs[2].data(), r.outputs[0].data());
    for (const auto& t : {r.outputs[0], r.outputs[1], r.norm_stats[0].mean}) QCOMPARE(t.offset() % 256, std::size_t{0});
    QCOMPARE(backend_.download(r.outputs[1]).to_f32(), values(80, 0.5f));
    QCOMPARE(backend_.download(r.norm_stats[0].var).to_f32(), values(2, 2.0f));
    QCOMPARE(spill_to_host(backend_, r), std::size_t{0});  // nothing left on the device

    // In part: the statistics and the first output stay, the rest moves.
    LayerRecord part;
    part.outputs = {backend_.upload(Tensor::from_f32({1, 4, 4, 3}, values(48, 0.25f))),
                    backend_.upload(Tensor::from_f32({1, 16, 5}, values(80, 0.5f)))};
    part.norm_stats = {{backend_.upload(Tensor::from_f32({1, 2}, values(2, 1.0f))), backend_.upload(Tensor::from_f32({1, 2}, values(2, 2.0f)))}};
    QCOMPARE(spill_to_host(backend_, part, 2 * 2 * 4 + 48 * 4 + 100), std::size_t{80 * 4});
    QVERIFY(!part.norm_stats[0].mean.host_resident() && !part.outputs[0].host_resident());
    QVERIFY(part.outputs[1].host_resident());
    QCOMPARE(backend_.download(part.outputs[1]).to_f32(), values(80, 0.5f));

    // Staged back: the step's ops read device copies, equal to what was spilled.
    const std::vector<LayerRecord> steps = {r};
    CachePrefetch cache(backend_, steps);
    const auto& staged = cache.acquire(0, nullptr);
    QCOMPARE(residency(staged).host, 0);
    QCOMPARE(backend_.download(backend_.scale(staged.outputs[0], 1.0f)).to_f32(), values(48, 0.25f));
    QCOMPARE(backend_.download(backend_.scale(staged.outputs[1], 1.0f)).to_f32(), values(80, 0.5f));
    QCOMPARE(staged.outputs[2].data(), staged.outputs[0].data());
    QCOMPARE(cache.stats().steps_staged, 1);
    QCOMPARE(cache.stats().bytes_staged, std::size_t{48 * 4 + 80 * 4 + 2 * 2 * 4});
  }

  // An edit's record with row deltas: the budget counts its rows, not the base's entries it shares, so
  // a small edit stays on the device; spilled, its entries are merged first and moved whole.
  void budget_counts_the_rows_of_row_deltas() {
    const std::vector<float> base_values(4 * 64, 1.0f);
    LayerRecord record;
    record.outputs = {backend_.upload(Tensor::from_f32({1, 4, 64}, base_values))};  // 1 KiB, the base's
    record.deltas = {{backend_.upload(Tensor::from_f32({1, 1, 64}, std::vector<float>(64, 5.0f))),
                      backend_.upload(Tensor::from_i64({1}, std::vector<std::int64_t>{2}))}};
    const std::size_t rows_bytes = record.deltas[0].rows.nbytes() + record.deltas[0].positions.nbytes();
    CacheSpill fits(backend_, rows_bytes, 1);  // far below the shared entry's 1 KiB
    LayerRecord kept = record;
    fits.keep(kept);
    QCOMPARE(fits.spilled_steps(), 0);
    QCOMPARE(fits.device_bytes(), rows_bytes);
    QVERIFY(kept.has_deltas());

    CacheSpill none(backend_, std::size_t{0}, 1);
    LayerRecord spilled = record;
    none.keep(spilled);
    backend_.synchronize_copies();
    QCOMPARE(none.spilled_steps(), 1);
    QVERIFY(!spilled.has_deltas());
    QVERIFY(spilled.outputs[0].host_resident());
    std::vector<float> want = base_values;
    std::fill(want.begin() + 2 * 64, want.begin() + 3 * 64, 5.0f);
    QCOMPARE(backend_.download(spilled.outputs[0]).to_f32(), want);
    QCOMPARE(backend_.download(record.outputs[0]).to_f32(), base_values);  // the base's entry untouched
  }

  // Budget 0 spills every step; half the cache keeps the last steps on the device; none keeps all.
  // Where the cache lives never changes the generation.
  void budget_places_steps_and_counts_bytes() {
    StableDiffusion sd(sd2_, backend_);
    const auto resident = sd.generate_cached(request());
    const std::size_t total = resident.cache_bytes();
    QVERIFY(total > 0);
    QCOMPARE(resident.cache_bytes_device(), total);
    QCOMPARE(resident.cache_bytes_host(), std::size_t{0});

    sd.set_cache_device_budget(0);
    const auto all_host = sd.generate_cached(request());
    QCOMPARE(all_host.cache_bytes_device(), std::size_t{0});
    QCOMPARE(all_host.cache_bytes_host(), total);
    for (const auto& step : all_host.steps) QCOMPARE(residency(step).device, 0);

    // The first step (an edit's default detection step: 20% of 6) spills whole; the others keep an
    // even share of what is left of two and a half steps' worth.
    // The first step is the larger: it keeps cross-attention probabilities for attention control.
    const auto bytes_of = [](const LayerRecord& r) {
      CacheByteCounter c;
      c.add(r);
      return c.bytes().total();
    };
    const std::size_t step_bytes = bytes_of(resident.steps.back()), first_bytes = bytes_of(resident.steps.front());
    QVERIFY(first_bytes > step_bytes);
    const std::size_t budget = 2 * step_bytes + step_bytes / 2;
    QCOMPARE(whole_spill_steps(6), 1);
    sd.set_cache_device_budget(budget);
    const auto part = sd.generate_cached(request());
    QVERIFY(part.cache_bytes_device() <= budget);
    QVERIFY(part.cache_bytes_device() > budget / 2);
    QCOMPARE(part.cache_bytes_device() + part.cache_bytes_host(), total);
    QCOMPARE(residency(part.steps[0]).device, 0);
    for (std::size_t i = 1; i < part.steps.size(); ++i) {
      const auto where = residency(part.steps[i]);
      QVERIFY2(where.device > 0 && where.host > 0, qPrintable(QString("step %1 not split").arg(i)));
      CacheByteCounter step;
      step.add(part.steps[i]);
      QVERIFY(step.bytes().device <= budget / 5 + budget / 50);  // about an even share
    }

    // A budget that holds all but the first step keeps the others whole.
    sd.set_cache_device_budget(total - first_bytes);
    const auto most = sd.generate_cached(request());
    QCOMPARE(most.cache_bytes_device(), total - first_bytes);
    QCOMPARE(residency(most.steps[0]).device, 0);
    for (std::size_t i = 1; i < most.steps.size(); ++i) QCOMPARE(residency(most.steps[i]).host, 0);

    QCOMPARE(all_host.latents, resident.latents);
    QCOMPARE(part.result.image.pixels, resident.result.image.pixels);
    QVERIFY(same_records(backend_, all_host, resident));
    QVERIFY(same_records(backend_, part, resident));
  }

  void spilled_edit_equals_the_resident_edit_data() {
    QTest::addColumn<int>("budget_steps");  // steps' worth of device budget for the base
    QTest::addColumn<int>("edit_budget_steps");  // and for the edits; -1: none
    QTest::addColumn<bool>("painted");
    QTest::addColumn<int>("depth");  // staging buffers
    QTest::addColumn<bool>("control");  // attention control: the detection steps read spilled probabilities
    QTest::newRow("all spilled, automatic mask") << 0 << 0 << false << 2 << false;
    QTest::newRow("half spilled, automatic mask") << 3 << 3 << false << 2 << false;
    QTest::newRow("all spilled, dotted mask") << 0 << 0 << true << 2 << false;
    QTest::newRow("half spilled, dotted mask") << 3 << 3 << true << 2 << false;
    // The edited generation on the device keeps nothing of the staging buffers, which later steps reuse.
    QTest::newRow("base spilled, edits resident") << 0 << -1 << false << 2 << false;
    QTest::newRow("base spilled, edits resident, dotted") << 0 << -1 << true << 2 << false;
    QTest::newRow("base spilled, edits resident, 3 buffers") << 0 << -1 << false << 3 << false;
    QTest::newRow("all spilled, attention control") << 0 << 0 << false << 2 << true;
    QTest::newRow("base spilled, edits resident, attention control") << 0 << -1 << false << 2 << true;
  }

  // The edit of a spilled generation, and the edit of that edit (whose own cache is spilled and which
  // shares the base's), equal the edits of the resident generation bit for bit.
  void spilled_edit_equals_the_resident_edit() {
    QFETCH(int, budget_steps);
    QFETCH(int, edit_budget_steps);
    QFETCH(bool, painted);
    QFETCH(int, depth);
    QFETCH(bool, control);
    StableDiffusion sd(sd2_, backend_);
    sd.set_cache_prefetch_depth(depth);
    const auto base = sd.generate_cached(request());
    EditRequest e{.prompt = "a photo of a cat wearing a hat"};
    e.detect_steps = 2;
    e.attention_control = control;
    if (painted) {
      e.mask_mode = MaskMode::painted;
      e.painted_mask = dotted_mask(192, 128);
    }
    EditRequest again = e;
    again.prompt = "a photo of a cat wearing a red hat";
    const auto want = sd.edit(base, e);
    const auto want_again = sd.edit(want.generation, again);
    QCOMPARE(want.stats.prefetched_bytes, std::size_t{0});

    const std::size_t step_bytes = base.cache_bytes() / base.steps.size();
    sd.set_cache_device_budget(static_cast<std::size_t>(budget_steps) * step_bytes);
    const auto spilled_base = sd.generate_cached(request());
    QVERIFY(spilled_base.cache_bytes_host() > 0);
    sd.set_cache_device_budget(edit_budget_steps < 0 ? std::nullopt
                                                     : std::optional<std::size_t>(static_cast<std::size_t>(edit_budget_steps) * step_bytes));
    const auto copies = backend_.copy_counters();
    const auto got = sd.edit(spilled_base, e);
    QVERIFY(backend_.copy_counters().calls > copies.calls);
    QVERIFY(got.stats.prefetched_bytes > 0);
    compare_edits(got, want);
    QCOMPARE(got.stats.attention_control_steps, want.stats.attention_control_steps);
    if (control) QVERIFY(got.stats.attention_control_steps > 0);
    // The first detection step took the spilled base's unconditional item from host memory.
    QCOMPARE(got.stats.unconditional_reused_steps, want.stats.unconditional_reused_steps);
    if (!painted) QCOMPARE(got.stats.unconditional_reused_steps, 1);
    if (edit_budget_steps >= 0) QVERIFY(got.generation.cache_bytes_host() > 0);  // the edit's own cache is spilled too
    QVERIFY(same_records(backend_, got.generation, want.generation));
    const auto got_again = sd.edit(got.generation, again);
    compare_edits(got_again, want_again);
    if (painted) {  // the staging left out what the edit recomputes in full, and still matched
      CachePrefetch cache(backend_, spilled_base.steps);
      SparseLevels levels(got.mask);
      cache.acquire(0, &levels);
      QVERIFY(cache.stats().bytes_not_read > 0);
    }
  }

  // A session's device budget holds over all its nodes: older nodes go to host memory first, and
  // editing one of them gives the same node as in a session without a budget.
  void session_device_budget() {
    StableDiffusion sd(sd2_, backend_);
    const auto probe = sd.generate_cached(request());
    const std::size_t one = probe.cache_bytes();
    EditSession plain(sd, 10 * one);
    const auto root = plain.generate(request());
    const auto child = plain.edit(root, EditRequest{.prompt = "a photo of a dog"});

    EditSession s(sd, 10 * one, one / 2);
    const auto r = s.generate(request());
    QVERIFY(s.cache_bytes_device() <= one / 2);
    QVERIFY(s.cache_bytes_host() > 0);
    const auto second = s.generate(GenerationRequest{"a photo of a bird", "", 8, 6, 7.5f, "dpmpp2m", 192, 128, std::nullopt});
    QVERIFY(s.cache_bytes_device() <= one / 2);
    QVERIFY(s.node(r).cached && s.node(second).cached);
    const auto c = s.edit(r, EditRequest{.prompt = "a photo of a dog"});
    QVERIFY(s.cache_bytes_device() <= one / 2);
    QCOMPARE(s.node(c).result.image.pixels, plain.node(child).result.image.pixels);
    QCOMPARE(s.cache_bytes_device() + s.cache_bytes_host(), plain.cache_bytes_device() + plain.cache_bytes_host() + one);
  }
};

QTEST_GUILESS_MAIN(TestCacheStore)
#include "test_cache_store.moc"
