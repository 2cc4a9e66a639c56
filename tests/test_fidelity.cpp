// The edit-fidelity benchmark (app/bench/fidelity.h) where CI runs: its cases and ground truth, its
// scoring on the world generator's own images, and the first 12 cases (2 of each kind) on the built-in
// toy-world model on the CPU, through the functions fisedit-bench --stages fidelity runs, with
// thresholds on what they measured.
#include "backend/cpu/cpu_backend.h"
#include "bench/fidelity.h"
#include "io/model_loader.h"
#include "text/clip_tokenizer.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

using namespace fisedit;
using namespace fisedit::fidelity;

namespace {

constexpr int kSubset = 2 * kEditKinds;

Image8 rendered(const toyworld::Scene& scene, std::uint64_t seed) {
  auto image = toyworld::render(scene, {.seed = seed});
  return Image8{image.width, image.height, 3, std::move(image.rgb)};
}

std::int64_t white_pixels(const Image8& region) {
  return std::count_if(region.pixels.begin(), region.pixels.end(), [](std::uint8_t v) { return v != 0; });
}

double figure(const nlohmann::json& methods, const char* method, const char* key) {
  const auto& v = methods.at(method).at(key);
  return v.is_number() ? v.get<double>() : -1.0;
}

}  // namespace

class TestFidelity : public QObject {
  Q_OBJECT

private slots:
  // A fixed set: the same cases from the same seed, a shorter run the start of a longer one, kinds in
  // turn, prompts in the grammar, no hard-to-see pair, and each edit exactly what its kind says.
  void cases_are_seeded_and_well_formed() {
    const auto cases = make_cases(60, 7001);
    const auto prefix = make_cases(kSubset, 7001);
    for (int i = 0; i < kSubset; ++i) {
      QCOMPARE(prefix[i].base, cases[i].base);
      QCOMPARE(prefix[i].edited, cases[i].edited);
      QCOMPARE(prefix[i].seed, cases[i].seed);
    }
    QVERIFY(make_cases(1, 7002)[0].base != cases[0].base || make_cases(1, 7002)[0].seed != cases[0].seed);
    for (const EditCase& c : cases) {
      QCOMPARE(c.kind, static_cast<EditKind>(c.index % kEditKinds));
      for (const toyworld::Scene* scene : {&c.base, &c.edited}) {
        QCOMPARE(toyworld::parse_prompt(toyworld::prompt(*scene)), std::optional<toyworld::Scene>(*scene));
        for (const auto& o : scene->objects) QVERIFY(!toyworld::hard_to_see(o.colour, scene->background));
      }
      const auto* before = c.cell >= 0 ? c.base.object_at(c.cell) : nullptr;
      const auto* after = c.cell >= 0 ? c.edited.object_at(c.cell) : nullptr;
      switch (c.kind) {
        case EditKind::recolour: QVERIFY(before && after && before->colour != after->colour); break;
        case EditKind::reshape: QVERIFY(before && after && before->shape != after->shape); break;
        case EditKind::resize: QVERIFY(before && after && before->size != after->size); break;
        case EditKind::add:
          QVERIFY(!before && after);
          QCOMPARE(c.edited.objects.back(), *after);
          break;
        case EditKind::remove: QVERIFY(before && !after && c.base.objects.size() >= 2); break;
        case EditKind::background:
          QCOMPARE(c.cell, -1);
          QVERIFY(c.base.background != c.edited.background);
          QCOMPARE(c.base.objects, c.edited.objects);
          break;
      }
      // Nothing but the edited cell (or the background) differs.
      for (int cell = 0; cell < toyworld::kCells; ++cell) {
        if (cell == c.cell) continue;
        const auto* a = c.base.object_at(cell);
        const auto* b = c.edited.object_at(cell);
        QVERIFY((!a && !b) || (a && b && *a == *b));
      }
      if (c.kind != EditKind::background) QCOMPARE(c.base.background, c.edited.background);
    }
  }

  void truth_regions() {
    for (const EditCase& c : make_cases(kSubset, 7001)) {
      const Image8 truth = truth_region(c);
      QCOMPARE(truth.width, toyworld::kImageSize);
      const auto cell_area = [](int cell) {
        const auto r = toyworld::cell_rect(cell);
        return std::int64_t{r.x1 - r.x0} * (r.y1 - r.y0);
      };
      std::int64_t want = 0;
      if (c.kind == EditKind::background) {
        want = std::int64_t{toyworld::kImageSize} * toyworld::kImageSize;
        for (const auto& o : c.base.objects) want -= cell_area(o.cell);
      } else {
        want = cell_area(c.cell);
        const auto r = toyworld::cell_rect(c.cell);
        QCOMPARE(truth.pixels[static_cast<std::size_t>(r.y0) * truth.width + r.x0], std::uint8_t{255});
      }
      QCOMPARE(white_pixels(truth), want);
    }
  }

  // The scoring itself, on the world generator's images: the edited scene rendered is a successful
  // edit that keeps every other cell, and the base rendered again is an edit that did nothing. The
  // analyser is right on at least 98% of such images, so allow one miss in the subset.
  void scores_rendered_edits() {
    int succeeded = 0, preserved = 0, unchanged = 0;
    for (const EditCase& c : make_cases(kSubset, 7001)) {
      const Image8 base = rendered(c.base, c.seed);
      const auto reading = toyworld::analyse(toyworld::Image{base.width, base.height, base.pixels});
      MethodScore edit, nothing;
      score_image(c, base, reading, rendered(c.edited, c.seed + 1), nullptr, edit);
      score_image(c, base, reading, rendered(c.base, c.seed + 1), nullptr, nothing);
      succeeded += edit.success;
      preserved += edit.preserved;
      unchanged += !nothing.success;
    }
    const auto of = [](int n, const char* what) { return QString("%1 of %2 %3").arg(n).arg(kSubset).arg(what).toUtf8(); };
    QVERIFY2(succeeded >= kSubset - 1, of(succeeded, "rendered edits succeeded").constData());
    QVERIFY2(preserved >= kSubset - 1, of(preserved, "rendered edits kept the other cells").constData());
    QVERIFY2(unchanged >= kSubset - 1, of(unchanged, "unedited images read as not edited").constData());
  }

  // The toy-world model's tokenizer takes any text (byte-level fallback): each grammar word is one
  // token, other words fall apart into pieces, and a prompt full of them still makes a finite,
  // non-black picture (the words are merely weak).
  void words_outside_the_grammar_still_generate() {
    const std::filesystem::path dir = FISEDIT_TOYWORLD_MODEL_DIR;
    const auto tokenizer = ClipTokenizer::from_folder(dir / "tokenizer");
    QCOMPARE(tokenizer.encode_unpadded("a red circle at the top left, sand background").size(), std::size_t{12});
    QVERIFY(tokenizer.encode_unpadded("a photo of a cat, 4k, trending on artstation").size() > 12);
    CpuBackend backend;
    StableDiffusion sd(std::make_shared<const LoadedModel>(load_model(dir)), backend);
    GenerationRequest r;
    r.prompt = "a photo of a cat, 4k, trending on artstation \u00e9\u00e8 \xf0\x9f\x90\x88";
    r.seed = 3;
    r.steps = 4;
    r.width = r.height = 128;
    const auto result = sd.generate(r);
    double sum = 0;
    for (const auto v : result.image.pixels) sum += v;
    QVERIFY2(sum / static_cast<double>(result.image.pixels.size()) > 20.0, "the picture is (nearly) black");
    for (const float v : result.latents.to_f32()) QVERIFY(std::isfinite(v));
  }

  // The benchmark's first cases on the trained model, with thresholds on what it measured.
  void toyworld_subset() {
    const std::filesystem::path dir = FISEDIT_TOYWORLD_MODEL_DIR;
    if (!std::filesystem::exists(dir / "model_index.json"))
      QSKIP(qPrintable("the toy-world model is not trained yet: " + QString::fromStdString(dir.string()) +
                       " has no model_index.json (training/toyworld makes it)"));
    CpuBackend backend;
    StableDiffusion sd(std::make_shared<const LoadedModel>(load_model(dir)), backend);
    Options options;
    options.cases = kSubset;
    options.regenerate = false;  // the baseline is not checked here; it costs a generation a case
    options.warmup = false;
    const auto report = run_fidelity(sd, options);
    print_fidelity(report, stdout);

    const auto& s = report["summary"];
    const auto& m = s["methods"];
    QCOMPARE(s["cases"].get<int>(), kSubset);
    // Measured on these 12 cases (2026-12-06, this CPU, DDIM 20 steps, CFG 7.5, margin 2): automatic
    // 9/12 succeeded, IoU 0.49; painted 9/12. One case of slack for another CPU's rounding.
    QVERIFY2(figure(m, "auto", "success") >= 8.0 / 12 - 1e-9, "automatic mask: edit success below 8 of 12");
    QVERIFY2(figure(m, "painted", "success") >= 8.0 / 12 - 1e-9, "painted mask: edit success below 8 of 12");
    QVERIFY2(figure(m, "auto", "iou_mean") >= 0.45, "automatic mask: mean IoU with the ground truth below 0.45");
    QVERIFY2(figure(m, "auto", "outside_mean") <= 0.25, "automatic mask: over 25% of it outside the truth");
    for (const char* method : {"auto", "auto_attention", "painted"}) {
      // By construction: outside the changed region the base's bytes, so the cells it leaves alone
      // read as they did.
      QCOMPARE(figure(m, method, "identical_outside_region"), 1.0);
      const double kept = figure(m, method, "preserved_outside_mask");
      QVERIFY2(kept == 1.0 || kept < 0.0, qPrintable(QString("%1: a cell outside the mask changed").arg(method)));
    }
  }
};

QTEST_GUILESS_MAIN(TestFidelity)
#include "test_fidelity.moc"
