// fisedit-cli info and tokenize on every reference model, and their error paths, through the real binary.
#include "io/image_file.h"
#include "io/safetensors.h"
#include "test_support.h"

#include <nlohmann/json.hpp>

#include <QProcess>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

using namespace fisedit;

namespace {

struct Run {
  int code;
  QString out;
  QString err;
};

Run run_program(const QString& program, const QStringList& args) {
  QProcess p;
  p.start(program, args);
  if (!p.waitForFinished(60000)) return {-1, {}, "timeout"};
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, QString::fromUtf8(p.readAllStandardOutput()),
          QString::fromUtf8(p.readAllStandardError())};
}

Run run_cli(const QStringList& args) { return run_program(FISEDIT_CLI_PATH, args); }

QString reference_path(const std::string& rel) { return QString::fromStdString((test::reference_dir() / rel).string()); }

}  // namespace

class TestCli : public QObject {
  Q_OBJECT

private slots:
  void info_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("family");
    QTest::addColumn<QString>("prediction");
    QTest::addColumn<QString>("format");
    for (const char* m : {"tiny-sd2", "tiny-sd15"}) {
      const bool sd2 = std::string(m) == "tiny-sd2";
      const QString family = sd2 ? "SD2.x" : "SD1.x";
      const QString prediction = sd2 ? "v_prediction" : "epsilon";
      const std::string base = m;
      QTest::addRow("%s folder", m) << QStringList{"--model", reference_path(base + "/model")} << family << prediction << "diffusers folder";
      QTest::addRow("%s single file", m) << QStringList{"--model", reference_path(base + "/single-file.safetensors")} << family << prediction
                                         << "single-file checkpoint";
      QTest::addRow("%s single file + config", m)
          << QStringList{"--model", reference_path(base + "/single-file.safetensors"), "--config", reference_path(base + "/model")} << family << prediction
          << "single-file checkpoint";
    }
  }

  void info() {
    QFETCH(QStringList, args);
    QFETCH(QString, family);
    QFETCH(QString, prediction);
    QFETCH(QString, format);
    const auto r = run_cli(QStringList{"info"} + args);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.out.contains(QRegularExpression("family: +" + QRegularExpression::escape(family))), qPrintable(r.out));
    QVERIFY2(r.out.contains(QRegularExpression("prediction: +" + prediction)), qPrintable(r.out));
    QVERIFY2(r.out.contains(QRegularExpression("format: +" + format)), qPrintable(r.out));
    for (const char* field : {"unet channels:", "unet heads:", "text encoder:", "vae channels:", "weight dtype:      F16", "parameters:"})
      QVERIFY2(r.out.contains(field), qPrintable(r.out));
  }

  void tokenize_data() {
    QTest::addColumn<QStringList>("model");
    QTest::addColumn<QString>("golden");
    for (const char* m : {"tiny-sd2", "tiny-sd15"}) {
      const std::string base = m;
      QTest::addRow("%s folder", m) << QStringList{"--model", reference_path(base + "/model")} << reference_path(base + "/golden.safetensors");
      QTest::addRow("%s single file + config", m)
          << QStringList{"--model", reference_path(base + "/single-file.safetensors"), "--config", reference_path(base + "/model")}
          << reference_path(base + "/golden.safetensors");
    }
  }

  void tokenize() {
    QFETCH(QStringList, model);
    QFETCH(QString, golden);
    // Prompt 4 of the goldens: whitespace runs, punctuation, "!!" (SD2's pad-token quirk), an apostrophe.
    const auto ids = SafetensorsFile::open(golden.toStdString()).tensor("tokens.ids").to_i64();
    QStringList expected;
    for (int i = 0; i < 77; ++i) expected << QString::number(ids[4 * 77 + i]);
    const auto r = run_cli(QStringList{"tokenize"} + model + QStringList{"  Hello,   WORLD!! it's 3.14 o'clock   "});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QCOMPARE(r.out, expected.join(' ') + "\n");
  }

  void generate_writes_golden_images_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<QString>("golden_file");
    QTest::addColumn<QString>("golden_key");
    QTest::addColumn<bool>("nhwc_unit");  // golden image layout: [1,H,W,3] in [0,1], else [1,3,H,W] in [-1,1]
    QTest::newRow("tiny-sd2 seed 7 ddim")
        << QStringList{"--model", reference_path("tiny-sd2/model"), "--prompt", "a photo of a cat", "--seed", "7", "--steps", "10",
                       "--cfg", "7.5", "--scheduler", "ddim", "--width", "128", "--height", "128"}
        << reference_path("seeded/golden.safetensors") << "seeded.tiny-sd2.ddim.image" << true;
    QTest::newRow("tiny-sd2 seed 8 dpmpp2m non-square")
        << QStringList{"--model", reference_path("tiny-sd2/model"), "--prompt", "a red car in the snow", "--negative", "blurry",
                       "--seed", "8", "--steps", "12", "--cfg", "5", "--scheduler", "dpmpp2m", "--width", "192", "--height", "128"}
        << reference_path("seeded/golden.safetensors") << "seeded.tiny-sd2.dpmpp2m.image" << true;
    // DPM++ 2M Karras by name on the model as shipped (a DDIM config: Karras sigmas ignore its spacing).
    QTest::newRow("tiny-sd15 seed 12 dpmpp2m_karras")
        << QStringList{"--model", reference_path("tiny-sd15/model"), "--prompt", "a photo of a cat", "--seed", "12",
                       "--steps", "15", "--cfg", "7", "--scheduler", "dpmpp2m_karras", "--width", "160", "--height", "128"}
        << reference_path("seeded/karras-ancestral.safetensors") << "seeded.tiny-sd15.dpmpp2m_karras.image" << true;
    for (const char* s : {"ddim", "dpmpp2m"}) {
      const QString noise = reference_path("tiny-sd15/golden.safetensors") + "#pipeline." + s + ".init_latents";
      QTest::addRow("tiny-sd15 single file %s", s)
          << QStringList{"--model", reference_path("tiny-sd15/single-file.safetensors"), "--config", reference_path("tiny-sd15/model"),
                         "--prompt", "a photo of a cat", "--steps", "10", "--scheduler", s, "--initial-noise", noise}
          << reference_path("tiny-sd15/golden.safetensors") << QString("pipeline.%1.image").arg(s) << false;
    }
  }

  void generate_writes_golden_images() {
    QFETCH(QStringList, args);
    QFETCH(QString, golden_file);
    QFETCH(QString, golden_key);
    QFETCH(bool, nhwc_unit);
    test::TempDir dir;
    const auto png = QString::fromStdString((dir / "out.png").string());
    const auto latents = QString::fromStdString((dir / "latents.safetensors").string());
    const auto r = run_cli(QStringList{"generate"} + args + QStringList{"--out", png, "--save-latents", latents});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.err.contains("step 1/") && r.err.contains("device: CPU"), qPrintable(r.err));

    const auto image = read_png(png.toStdString());
    const auto golden = SafetensorsFile::open(golden_file.toStdString()).tensor(golden_key.toStdString());
    const auto values = golden.to_f32();
    const int h = int(golden.dim(nhwc_unit ? 1 : 2)), w = int(golden.dim(nhwc_unit ? 2 : 3));
    QCOMPARE(image.width, w);
    QCOMPARE(image.height, h);
    QCOMPARE(image.channels, 3);
    int worst = 0;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int c = 0; c < 3; ++c) {
          const float v = nhwc_unit ? values[(std::size_t(y) * w + x) * 3 + c]
                                    : std::clamp(values[(std::size_t(c) * h + y) * w + x] / 2 + 0.5f, 0.0f, 1.0f);
          const int expected = int(std::nearbyint(255.0f * v));
          worst = std::max(worst, std::abs(expected - int(image.pixels[(std::size_t(y) * w + x) * 3 + c])));
        }
    QVERIFY2(worst <= 1, qPrintable(QString("max 8-bit difference %1").arg(worst)));

    // The AUTOMATIC1111 parameters chunk and our JSON record.
    const auto text = read_png_text(png.toStdString());
    QCOMPARE(text.size(), std::size_t{2});
    QCOMPARE(text[0].first, std::string("parameters"));
    QVERIFY2(QString::fromStdString(text[0].second).contains(QRegularExpression("\\nSteps: \\d+, Sampler: (DDIM|DPM\\+\\+ 2M|DPM\\+\\+ 2M Karras), CFG scale: [0-9.]+, Seed: \\d+, Size: \\d+x\\d+, Model: ")),
             text[0].second.c_str());
    QCOMPARE(text[1].first, std::string("fisedit"));
    QVERIFY(nlohmann::json::parse(text[1].second).contains("timings_ms"));
    const auto saved = SafetensorsFile::open(latents.toStdString()).tensor("latents");
    QCOMPARE(saved.shape(), (Shape{1, 4, h / 8, w / 8}));
  }

  // A model whose own scheduler is Euler ancestral, or Euler with Karras sigmas, generates with that
  // sampler when --scheduler is left out, and gives diffusers' image for the seed
  // (seeded/karras-ancestral.*: tiny-sd15 with the scheduler config the golden names).
  void generate_with_the_models_own_sampler_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<QString>("a1111_name");
    QTest::newRow("euler_a") << "euler_a" << "Euler a";
    QTest::newRow("euler_karras") << "euler_karras" << "Euler Karras";
  }

  void generate_with_the_models_own_sampler() {
    QFETCH(QString, scheduler);
    QFETCH(QString, a1111_name);
    std::ifstream in(test::reference_dir() / "seeded" / "karras-ancestral.json");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (std::size_t at; (at = text.find("-Infinity")) != std::string::npos;) text.replace(at, 9, "null");  // not JSON
    const std::string key = "seeded.tiny-sd15." + scheduler.toStdString();
    const auto entry = nlohmann::json::parse(text).at(key);
    // The model folder with the golden's scheduler config as its own.
    test::TempDir dir;
    const auto model = dir / "model";
    std::filesystem::copy(test::reference_dir() / "tiny-sd15" / "model", model, std::filesystem::copy_options::recursive);
    for (auto& file : std::filesystem::recursive_directory_iterator(model))
      std::filesystem::permissions(file.path(), std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    std::filesystem::permissions(model, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
    auto config = entry.at("scheduler_config");
    config["_class_name"] = entry.at("scheduler_class");
    std::ofstream(model / "scheduler" / "scheduler_config.json") << config.dump(1);

    const auto png = QString::fromStdString((dir / "out.png").string());
    const auto r = run_cli({"generate", "--model", QString::fromStdString(model.string()), "--prompt",
                            QString::fromStdString(entry.at("prompt").get<std::string>()), "--negative",
                            QString::fromStdString(entry.at("negative_prompt").get<std::string>()), "--seed",
                            QString::number(entry.at("seed").get<int>()), "--steps", QString::number(entry.at("steps").get<int>()),
                            "--cfg", QString::number(entry.at("guidance_scale").get<double>()), "--width",
                            QString::number(entry.at("width").get<int>()), "--height",
                            QString::number(entry.at("height").get<int>()), "--out", png});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto image = read_png(png.toStdString());
    const auto golden = SafetensorsFile::open(test::reference_dir() / "seeded" / "karras-ancestral.safetensors")
                            .tensor(key + ".image")
                            .to_f32();
    QCOMPARE(image.pixels.size(), golden.size());
    int worst = 0;
    for (std::size_t i = 0; i < golden.size(); ++i)
      worst = std::max(worst, std::abs(int(std::nearbyint(255.0f * golden[i])) - int(image.pixels[i])));
    QVERIFY2(worst <= 1, qPrintable(QString("max 8-bit difference %1").arg(worst)));
    const auto chunks = read_png_text(png.toStdString());
    QVERIFY2(QString::fromStdString(chunks.at(0).second).contains("Sampler: " + a1111_name + ","), chunks.at(0).second.c_str());
  }

  void edit_keeps_pixels_outside_the_mask_data() {
    QTest::addColumn<QStringList>("mask_args");
    QTest::addColumn<int>("detect_steps");
    // A random-weight model's edits move the whole image: --global-change region keeps them a region,
    // so that there is an outside to check.
    QTest::newRow("automatic") << QStringList{"--detect-steps", "2", "--mask-margin", "1", "--global-change", "region"} << 2;
    QTest::newRow("automatic, attention control")
        << QStringList{"--detect-steps", "2", "--attention-control", "on", "--global-change", "region"} << 2;
    QTest::newRow("painted") << QStringList{"--mask", "PAINTED"} << 0;             // a painted mask needs no detection
    QTest::newRow("intersect") << QStringList{"--mask", "PAINTED", "--mask-mode", "intersect"} << 1;  // 20% of 6 steps
  }

  void edit_keeps_pixels_outside_the_mask() {
    QFETCH(QStringList, mask_args);
    QFETCH(int, detect_steps);
    test::TempDir dir;
    auto path = [&](const char* name) { return QString::fromStdString((dir / name).string()); };
    // A painted mask: the left half of a 192x128 image.
    Image8 painted{192, 128, 1, std::vector<std::uint8_t>(192 * 128, 0)};
    for (int y = 0; y < 128; ++y)
      for (int x = 0; x < 96; ++x) painted.pixels[static_cast<std::size_t>(y) * 192 + x] = 255;
    write_png(dir / "painted.png", painted);
    mask_args.replaceInStrings("PAINTED", path("painted.png"));
    const auto r = run_cli(QStringList{"edit", "--model", reference_path("tiny-sd15/model"), "--prompt", "a photo of a cat",
                                       "--edit-prompt", "a photo of a dog", "--seed", "5", "--steps", "6", "--width", "192",
                                       "--height", "128", "--scheduler", "euler", "--out", path("edit.png"), "--base-out",
                                       path("base.png"), "--mask-out", path("mask.png"), "--stats-json", path("stats.json")} +
                           mask_args);
    QVERIFY2(r.code == 0, qPrintable(r.err));
    const auto base = read_png(dir / "base.png"), edited = read_png(dir / "edit.png"), mask = read_png(dir / "mask.png");
    QCOMPARE(mask.width, 192);
    int outside = 0, changed_outside = 0;
    for (std::size_t p = 0; p < mask.pixels.size(); ++p)
      if (mask.pixels[p] == 0) {
        ++outside;
        for (int c = 0; c < 3; ++c) changed_outside += base.pixels[p * 3 + c] != edited.pixels[p * 3 + c];
      }
    QVERIFY(outside > 0);
    QCOMPARE(changed_outside, 0);
    if (mask_args.contains("--mask"))  // the right half was never painted
      for (int y = 0; y < 128; ++y) QCOMPARE(int(mask.pixels[static_cast<std::size_t>(y) * 192 + 191]), 0);
    std::ifstream in(dir / "stats.json");
    const auto stats = nlohmann::json::parse(in);
    for (const char* key : {"edit_fraction", "detect_steps", "base_ms", "detect_ms", "sparse_ms", "decode_ms", "edit_ms",
                            "cache_bytes_device", "cache_bytes_host"})
      QVERIFY2(stats.contains(key), key);
    QCOMPARE(stats["detect_steps"].get<int>(), detect_steps);
    // One of the sparse steps (6 steps, at most 2 of them detection): part of the sparse time.
    const double first_step = stats["first_sparse_step_ms"].get<double>();
    QVERIFY2(first_step > 0.0 && first_step <= stats["sparse_ms"].get<double>(), qPrintable(QString::number(first_step)));
    // Attention control is recorded, and acts on the detection steps whose probabilities the base
    // kept (the first default_detection_steps: 1 of 6 steps).
    const bool control = mask_args.contains("--attention-control");
    QCOMPARE(stats["attention_control"].get<bool>(), control);
    QCOMPARE(stats["attention_control_steps"].get<int>(), control ? 1 : 0);
    QVERIFY(stats["cache_bytes_host"].get<std::int64_t>() > 0);
    const auto text = read_png_text(dir / "edit.png");
    QVERIFY(QString::fromStdString(text[0].second).startsWith("a photo of a dog\n"));
  }

  // fisedit-bench's whole-edit measurement: blob masks of the asked shares replace the detected mask,
  // and the sparse route matches the dense reference route inside the changed region.
  // --batch-count 3: out-<seed>.png for seeds s, s+1, s+2, each the image a single generate of its seed
  // writes; edit --batch-count 2: each seed's base and its edit, named by seed, each the single run's.
  void batch_count_writes_one_file_per_seed() {
    test::TempDir dir;
    auto path = [&](const std::string& name) { return QString::fromStdString((dir / name).string()); };
    const QStringList common{"--model", reference_path("tiny-sd2/model"), "--prompt", "a photo of a cat", "--steps", "3",
                             "--width", "128", "--height", "128", "--device", "cpu"};
    auto r = run_cli(QStringList{"generate"} + common + QStringList{"--seed", "5", "--batch-count", "3", "--out", path("out.png")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY2(r.err.contains("image 2 of 3: seed 6"), qPrintable(r.err));
    QVERIFY(!std::filesystem::exists(dir / "out.png"));
    r = run_cli(QStringList{"generate"} + common + QStringList{"--seed", "6", "--out", path("single.png")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    for (const char* name : {"out-5.png", "out-6.png", "out-7.png"}) QVERIFY2(std::filesystem::exists(dir / name), name);
    QVERIFY(read_png(dir / "out-6.png").pixels == read_png(dir / "single.png").pixels);
    QVERIFY(read_png(dir / "out-5.png").pixels != read_png(dir / "out-6.png").pixels);
    QCOMPARE(nlohmann::json::parse(read_png_text(dir / "out-7.png")[1].second)["seed"].get<int>(), 7);

    const QStringList edit = QStringList{"edit"} + common + QStringList{"--edit-prompt", "a photo of a dog"};
    r = run_cli(edit + QStringList{"--seed", "5", "--batch-count", "2", "--out", path("edit.png"), "--base-out", path("base.png")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    r = run_cli(edit + QStringList{"--seed", "6", "--out", path("edit-single.png"), "--base-out", path("base-single.png")});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    for (const char* name : {"edit-5.png", "edit-6.png", "base-5.png", "base-6.png"}) QVERIFY2(std::filesystem::exists(dir / name), name);
    QVERIFY(read_png(dir / "base-6.png").pixels == read_png(dir / "base-single.png").pixels);
    QVERIFY(read_png(dir / "edit-6.png").pixels == read_png(dir / "edit-single.png").pixels);
  }

  void bench_edit_sizes() {
    const test::TempDir dir;
    const auto json = QString::fromStdString((dir.path() / "bench.json").string());
    const auto r = run_program(FISEDIT_BENCH_PATH,
                               {"--arch", "tiny-sd2", "--device", "cpu", "--steps", "5", "--generations", "1",
                                "--width", "128", "--height", "96", "--stages", "edit_sizes", "--edit-sizes", "0.1,0.3",
                                "--tokenizer", reference_path("tiny-sd2/model/tokenizer"), "--json", json});
    QVERIFY2(r.code == 0, qPrintable(r.err));
    QVERIFY(r.out.contains("whole edits"));
    std::ifstream in(json.toStdString());
    const auto report = nlohmann::json::parse(in);
    const auto& sizes = report["results"]["edit_sizes"]["sizes"];
    QCOMPARE(sizes.size(), std::size_t{2});
    const double asked[] = {0.1, 0.3};
    for (std::size_t i = 0; i < 2; ++i) {
      const auto& row = sizes[i];
      QVERIFY2(std::abs(row["edit_fraction"].get<double>() - asked[i]) < 0.03, row.dump().c_str());
      QCOMPARE(row["detect_steps"].get<int>(), 1);  // 20% of 5 steps
      QCOMPARE(row["unconditional_reused_steps"].get<int>(), 1);
      // The marked edit's timeline: each of the 4 sparse steps starts with a mark; the 3 sampled on the
      // device (from the second) end with the sampler's.
      QCOMPARE(row["step_marks"]["step"]["n"].get<int>(), 4);
      QCOMPARE(row["step_marks"]["sampler step"]["n"].get<int>(), 3);
      QVERIFY(row["step_marks"]["sampler step"]["median"].get<double>() >= 0);
      QVERIFY(row["edit_ms"]["median"].get<double>() > 0);
      QVERIFY(row["cache_bytes"].get<std::int64_t>() > 0);
      // Float32 on the CPU: the sparse and dense routes agree to rounding (or exactly).
      QVERIFY2(row["psnr_inside_db"].is_null() || row["psnr_inside_db"].get<double>() > 40.0, row.dump().c_str());
    }
    QVERIFY(sizes[0]["profile_first_edit"].is_null());  // only when asked for
    // The first edit op by op under the profiler: its ops with their host time.
    qputenv("FISEDIT_BENCH_PROFILE_FIRST_EDIT", "1");
    const auto profiled = run_program(FISEDIT_BENCH_PATH,
                                      {"--arch", "tiny-sd2", "--device", "cpu", "--steps", "5", "--generations", "1",
                                       "--width", "128", "--height", "96", "--stages", "edit_sizes", "--edit-sizes", "0.1",
                                       "--tokenizer", reference_path("tiny-sd2/model/tokenizer"), "--json", json});
    qunsetenv("FISEDIT_BENCH_PROFILE_FIRST_EDIT");
    QVERIFY2(profiled.code == 0, qPrintable(profiled.err));
    std::ifstream again(json.toStdString());
    const auto ops = nlohmann::json::parse(again)["results"]["edit_sizes"]["sizes"][0]["profile_first_edit"];
    QVERIFY2(ops.is_array() && !ops.empty(), ops.dump().c_str());
    QVERIFY(std::any_of(ops.begin(), ops.end(), [](const nlohmann::json& op) {
      return op["op"] == "conv2d_at" && op["calls"].get<int>() > 0 && op["host_ms"].get<double>() >= 0;
    }));
    const auto bad = run_program(FISEDIT_BENCH_PATH, {"--arch", "tiny-sd2", "--edit-sizes", "0.1,2"});
    QCOMPARE(bad.code, 2);
    QVERIFY(bad.err.contains("--edit-sizes"));
  }

  void errors_data() {
    QTest::addColumn<QStringList>("args");
    QTest::addColumn<int>("code");
    QTest::addColumn<QString>("message");
    QTest::newRow("missing model") << QStringList{"info", "--model", "/nonexistent/model"} << 1 << "/nonexistent/model: no such file";
    QTest::newRow("no tokenizer in a single file")
        << QStringList{"tokenize", "--model", reference_path("tiny-sd2/single-file.safetensors"), "a cat"} << 1 << "pass --config DIR";
    QTest::newRow("unknown option") << QStringList{"info", "--modle", "x"} << 2 << "unknown option --modle";
    QTest::newRow("missing --model") << QStringList{"info"} << 2 << "option --model is required";
    QTest::newRow("no text") << QStringList{"tokenize", "--model", reference_path("tiny-sd2/model")} << 2 << "exactly one TEXT";
    const QStringList gen{"generate", "--model", reference_path("tiny-sd2/model"), "--prompt", "a cat", "--steps", "2"};
    QTest::newRow("size not a multiple of 8") << gen + QStringList{"--width", "130"} << 1 << "not a multiple of 8";
    QTest::newRow("unknown scheduler") << gen + QStringList{"--scheduler", "plms"} << 1 << "unknown scheduler 'plms'";
    QTest::newRow("cuda unavailable") << gen + QStringList{"--device", "cuda"} << 1 << "no CUDA backend";
    QTest::newRow("steps not a number") << gen + QStringList{"--steps", "ten"} << 2 << "--steps expects a number";
    QTest::newRow("missing prompt") << QStringList{"generate", "--model", reference_path("tiny-sd2/model")} << 2 << "option --prompt is required";
    const QStringList edit{"edit", "--model", reference_path("tiny-sd2/model"), "--prompt", "a cat", "--edit-prompt", "a dog", "--steps", "2"};
    QTest::newRow("painted mode without a mask") << edit + QStringList{"--mask-mode", "painted"} << 2 << "need --mask FILE.png";
    QTest::newRow("mask of the wrong size") << edit + QStringList{"--mask", reference_path("../shared-missing.png")} << 1 << "cannot open";
    QTest::newRow("bad attention control") << edit + QStringList{"--attention-control", "yes"} << 2 << "--attention-control is on or off";
    QTest::newRow("edit prompt unchanged") << QStringList{"edit", "--model", reference_path("tiny-sd2/model"), "--prompt", "a cat", "--edit-prompt", "a cat", "--steps", "2"} << 2 << "nothing to edit";
    QTest::newRow("missing edit prompt") << QStringList{"edit", "--model", reference_path("tiny-sd2/model"), "--prompt", "a cat"} << 2 << "option --edit-prompt is required";
    QTest::newRow("unknown command") << QStringList{"paint"} << 2 << "unknown command 'paint'";
    // Issue 15: sizes beyond the limit and outputs that are not regular files, refused before any work.
    QTest::newRow("height beyond the limit") << gen + QStringList{"--width", "8", "--height", "2147483640"} << 2
                                             << "--height must be between 8 and 4096 (a multiple of 8), not 2147483640";
    QTest::newRow("width beyond the limit") << gen + QStringList{"--width", "4104"} << 2 << "--width must be between 8 and 4096";
    QTest::newRow("output is a device") << gen + QStringList{"--out", "/dev/null"} << 1 << "/dev/null: cannot write there: it is a device";
    QTest::newRow("output is a folder") << gen + QStringList{"--out", reference_path("tiny-sd2")} << 1 << "cannot write there: it is a folder";
    QTest::newRow("latents output is a folder") << gen + QStringList{"--save-latents", reference_path("tiny-sd2")} << 1 << "it is a folder";
    // Batch count (issue 14): 1..16, refused before any work, naming the option.
    QTest::newRow("batch count 0") << gen + QStringList{"--batch-count", "0"} << 2 << "--batch-count must be between 1 and 16, not 0";
    QTest::newRow("batch count 17") << gen + QStringList{"--batch-count", "17"} << 2 << "--batch-count must be between 1 and 16, not 17";
    QTest::newRow("batch count not a number") << gen + QStringList{"--batch-count", "three"} << 2 << "--batch-count expects a number";
    QTest::newRow("edit batch count 17") << edit + QStringList{"--batch-count", "17"} << 2 << "--batch-count must be between 1 and 16";
    QTest::newRow("batch count with initial noise")
        << gen + QStringList{"--batch-count", "2", "--initial-noise", reference_path("tiny-sd15/golden.safetensors") + "#pipeline.ddim.init_latents"}
        << 2 << "--batch-count above 1 cannot be combined with --initial-noise";
  }

  // info validates what it reports: a model generate would refuse fails info too, naming the file.
  void info_validates_like_generate() {
    test::TempDir dir;
    const auto ref = test::reference_dir() / "tiny-sd15" / "model";
    const auto p = dir / "p";
    std::filesystem::create_directories(p);
    for (const auto& entry : std::filesystem::directory_iterator(ref))
      if (entry.path().filename() != "tokenizer") std::filesystem::create_symlink(entry.path(), p / entry.path().filename());
    std::filesystem::create_directories(p / "tokenizer" / "merges.txt");  // a folder where the merges belong
    std::filesystem::copy_file(ref / "tokenizer" / "vocab.json", p / "tokenizer" / "vocab.json");
    const auto r = run_cli({"info", "--model", QString::fromStdString(p.string())});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains("merges.txt") && r.err.contains("not a regular file"), qPrintable(r.err));
    QVERIFY(r.out.isEmpty());
  }

  // A mask PNG of another size than the image is refused before the base is generated, naming the file.
  void mask_size_checked_first() {
    test::TempDir dir;
    const auto mask = dir / "mask.png";
    write_png(mask, Image8{16, 16, 1, std::vector<std::uint8_t>(256, 255)});
    const auto r = run_cli({"edit", "--model", reference_path("tiny-sd15/model"), "--prompt", "a cat", "--edit-prompt", "a dog",
                            "--steps", "2", "--width", "64", "--height", "64", "--mask", QString::fromStdString(mask.string())});
    QCOMPARE(r.code, 1);
    QVERIFY2(r.err.contains(QString::fromStdString(mask.string()) + ": the mask is 16x16 pixels but the image is 64x64"), qPrintable(r.err));
    QVERIFY2(!r.err.contains("base:"), qPrintable(r.err));  // nothing was generated
  }

  void errors() {
    QFETCH(QStringList, args);
    QFETCH(int, code);
    QFETCH(QString, message);
    const auto r = run_cli(args);
    QCOMPARE(r.code, code);
    QVERIFY2(r.err.contains(message), qPrintable(r.err));
    QCOMPARE(r.err.count('\n'), 1);  // one clear line
    QVERIFY(r.out.isEmpty());
  }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
