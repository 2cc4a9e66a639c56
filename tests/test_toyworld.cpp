// The toy world: the prompt grammar both ways, the generator's determinism and statistics, the
// renderer's colours, and the analyser that reads images back (on clean renders, and on renders
// blurred and noised the way a diffusion model's imitation would be).
#include "core/error.h"
#include "toyworld/analyse.h"
#include "toyworld/world.h"

#include <QtTest>

#include <algorithm>
#include <cmath>

using namespace fisedit::toyworld;

namespace {

QString describe(const Scene& scene) { return QString::fromStdString(prompt(scene)); }

// A 3x3 box blur and +-8 of uniform noise a channel: soft edges and grain, as a diffusion model adds.
Image perturbed(const Image& image, Rng& rng) {
  Image out = image;
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      for (int k = 0; k < 3; ++k) {
        int sum = 0, n = 0;
        for (int yy = std::max(0, y - 1); yy <= std::min(image.height - 1, y + 1); ++yy)
          for (int xx = std::max(0, x - 1); xx <= std::min(image.width - 1, x + 1); ++xx, ++n)
            sum += image.rgb[(static_cast<std::size_t>(yy) * image.width + xx) * 3 + k];
        const int v = (sum + n / 2) / n + rng.uniform(17) - 8;
        out.rgb[(static_cast<std::size_t>(y) * image.width + x) * 3 + k] =
            static_cast<std::uint8_t>(std::clamp(v, 0, 255));
      }
    }
  }
  return out;
}

}  // namespace

class TestToyWorld : public QObject {
  Q_OBJECT

private slots:
  void prompt_follows_the_grammar() {
    const Scene scene{{{Shape::circle, Colour::red, Size::medium, 0}, {Shape::house, Colour::blue, Size::big, 8}},
                      Background::sand};
    QCOMPARE(describe(scene),
             QStringLiteral("a red circle at the top left and a big blue house at the bottom right, sand background"));
    QCOMPARE(describe({{{Shape::star, Colour::white, Size::small, 4}}, Background::night}),
             QStringLiteral("a small white star at the center, night background"));
  }

  void parse_round_trips() {
    Rng rng(3);
    for (int i = 0; i < 2000; ++i) {
      const Scene scene = random_scene(rng);
      const auto parsed = parse_prompt(prompt(scene));
      QVERIFY2(parsed && *parsed == scene, qPrintable(describe(scene)));
    }
  }

  void parse_refuses_malformed_data() {
    QTest::addColumn<QString>("text");
    QTest::newRow("empty") << "";
    QTest::newRow("no objects") << ", sand background";
    QTest::newRow("no background") << "a red circle at the top left";
    QTest::newRow("background word missing") << "a red circle at the top left, sand";
    QTest::newRow("no comma") << "a red circle at the top left sand background";
    QTest::newRow("trailing space") << "a red circle at the top left, sand background ";
    QTest::newRow("double space") << "a red  circle at the top left, sand background";
    QTest::newRow("space before comma") << "a red circle at the top left , sand background";
    QTest::newRow("capital") << "A red circle at the top left, sand background";
    QTest::newRow("no article") << "red circle at the top left, sand background";
    QTest::newRow("an") << "an orange circle at the top left, sand background";
    QTest::newRow("medium said") << "a medium red circle at the top left, sand background";
    QTest::newRow("two sizes") << "a big small red circle at the top left, sand background";
    QTest::newRow("no colour") << "a circle at the top left, sand background";
    QTest::newRow("unknown colour") << "a crimson circle at the top left, sand background";
    QTest::newRow("unknown shape") << "a red hexagon at the top left, sand background";
    QTest::newRow("unknown position") << "a red circle at the middle, sand background";
    QTest::newRow("no 'the'") << "a red circle at top left, sand background";
    QTest::newRow("unknown background") << "a red circle at the top left, desert background";
    QTest::newRow("repeated cell") << "a red circle at the top and a blue star at the top, sea background";
    QTest::newRow("objects by comma") << "a red circle at the top, a blue star at the left, sea background";
    QTest::newRow("dangling and") << "a red circle at the top and , sea background";
    QTest::newRow("four objects") << "a red circle at the top and a blue star at the left and a red tree at the right "
                                     "and a pink boat at the bottom, sea background";
    QTest::newRow("two backgrounds") << "a red circle at the top, sea background, sand background";
  }
  void parse_refuses_malformed() {
    QFETCH(QString, text);
    QVERIFY(!parse_prompt(text.toStdString()));
  }

  void generator_is_deterministic() {
    // xoshiro256** seeded by splitmix64: fixed numbers, so data sets agree across machines.
    Rng zero(0);
    QCOMPARE(zero.next(), 0x99ec5f36cb75f2b4ull);
    QCOMPARE(zero.next(), 0xbf6e1f784956452aull);
    Rng a(11), b(11), c(12);
    bool any_difference = false;
    for (int i = 0; i < 20; ++i) {
      const Scene sa = random_scene(a), sb = random_scene(b), sc = random_scene(c);
      QCOMPARE(sa, sb);
      any_difference |= !(sa == sc);
    }
    QVERIFY(any_difference);
    Rng r(5);
    const Scene scene = random_scene(r);
    QCOMPARE(render(scene, {.seed = 9}).rgb, render(scene, {.seed = 9}).rgb);
    QVERIFY(render(scene, {.seed = 9}).rgb != render(scene, {.seed = 10}).rgb);
  }

  void scene_statistics() {
    Rng rng(17);
    constexpr int kScenes = 6000;
    std::array<int, kMaxObjects + 1> counts{};
    std::array<int, kSizes> sizes{};
    int objects = 0;
    for (int i = 0; i < kScenes; ++i) {
      const Scene scene = random_scene(rng, {.keep_hard_to_see = 0});
      ++counts[scene.objects.size()];
      for (const Object& o : scene.objects) {
        QVERIFY2(!hard_to_see(o.colour, scene.background), qPrintable(describe(scene)));
        QCOMPARE(scene.object_at(o.cell), &o);  // cells distinct
        ++sizes[static_cast<int>(o.size)];
        ++objects;
      }
    }
    QCOMPARE(counts[0], 0);
    QVERIFY(std::abs(counts[1] / double(kScenes) - 0.35) < 0.03);
    QVERIFY(std::abs(counts[2] / double(kScenes) - 0.40) < 0.03);
    QVERIFY(std::abs(counts[3] / double(kScenes) - 0.25) < 0.03);
    QVERIFY(std::abs(sizes[static_cast<int>(Size::medium)] / double(objects) - 0.5) < 0.03);
    // Hard-to-see pairs happen when kept.
    int hard = 0;
    for (int i = 0; i < 2000; ++i) {
      const Scene scene = random_scene(rng, {.keep_hard_to_see = 1});
      for (const Object& o : scene.objects) hard += hard_to_see(o.colour, scene.background);
    }
    QVERIFY(hard > 0);
  }

  void render_paints_the_colour() {
    // A point well inside each shape's part drawn in the object's colour (a boat's centre is its mast gap).
    const std::array<std::pair<double, double>, kShapes> probe = {
        {{0, 0}, {0, 0}, {0, 0.2}, {0, 0.05}, {0, 0}, {0, 0.2}, {0, -0.14}, {0.2, 0}}};
    for (int s = 0; s < kShapes; ++s) {
      for (int c = 0; c < kColours; ++c) {
        for (int cell : {0, 4, 8}) {
          const Object object{static_cast<Shape>(s), static_cast<Colour>(c), Size::medium, cell};
          const Scene scene{{object}, static_cast<Background>((s + c) % kBackgrounds)};
          const Image image = render(scene, {.seed = static_cast<std::uint64_t>(cell * 100 + c), .max_jitter = 0});
          const CellRect r = cell_rect(cell);
          const double side = size_fraction(Size::medium) * kImageSize / 3.0;
          const int x = static_cast<int>((r.x0 + r.x1) / 2.0 + probe[s].first * side);
          const int y = static_cast<int>((r.y0 + r.y1) / 2.0 + probe[s].second * side);
          const auto want = colour_rgb(object.colour);
          for (int k = 0; k < 3; ++k) {
            const int got = image.rgb[(static_cast<std::size_t>(y) * kImageSize + x) * 3 + k];
            QVERIFY2(std::abs(got - want[k]) <= 0.13 * want[k] + 2, qPrintable(describe(scene)));
          }
        }
      }
    }
  }

  void analyser_reads_renders_data() {
    QTest::addColumn<bool>("perturb");
    QTest::addColumn<double>("required");
    QTest::newRow("clean") << false << 0.98;
    QTest::newRow("blurred and noised") << true << 0.95;
  }
  void analyser_reads_renders() {
    QFETCH(bool, perturb);
    QFETCH(double, required);
    Rng rng(2024);
    constexpr int kImages = 300;
    int right = 0, sizes_right = 0, cells = 0;
    QStringList misses;
    for (int i = 0; i < kImages; ++i) {
      const Scene scene = random_scene(rng, {.keep_hard_to_see = 0});
      Image image = render(scene, {.seed = rng.next()});
      if (perturb) image = perturbed(image, rng);
      const SceneCheck result = check(analyse(image), scene);
      if (result.objects_right()) ++right;
      else if (misses.size() < 5) misses << describe(scene);
      for (const CellCheck& c : result.cells) sizes_right += c.size, ++cells;
    }
    const double accuracy = right / double(kImages);
    qInfo("toy world analyser, %s: %.1f%% of %d images read right (presence, colour, shape, background); "
          "sizes %.1f%% of cells", QTest::currentDataTag(), 100 * accuracy, kImages, 100.0 * sizes_right / cells);
    QVERIFY2(accuracy >= required, qPrintable(misses.join("; ")));
  }

  void analyser_sees_an_empty_world() {
    for (int b = 0; b < kBackgrounds; ++b) {
      const Scene scene{{}, static_cast<Background>(b)};
      const ImageReading reading = analyse(render(scene, {.seed = static_cast<std::uint64_t>(b)}));
      QVERIFY2(check(reading, scene).objects_right(), qPrintable(describe(scene)));
    }
  }

  void analyser_refuses_other_sizes() {
    bool thrown = false;
    try {
      analyse(Image{128, 128, std::vector<std::uint8_t>(128 * 128 * 3)});
    } catch (const fisedit::Error& e) {
      thrown = e.code() == fisedit::ErrorCode::invalid_argument;
    }
    QVERIFY(thrown);
  }
};

QTEST_GUILESS_MAIN(TestToyWorld)
#include "test_toyworld.moc"
