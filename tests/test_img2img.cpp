// Image to image (issue 14 item 5) on the CPU backend, as diffusers' StableDiffusionImg2ImgPipeline:
// strength -> first step, every sampler from a mid-schedule start, closeness to the input, seeds, prompt
// edits of an image-to-image result (outside the mask nothing changes; the sparse route equals the
// dense one), the request's JSON and A1111 spellings, JPEG reading, fisedit-cli end to end, and
// diffusers' own numbers (tests/data/img2img-golden.*, app/tools/img2img_golden.py) where present.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/a1111_parameters.h"
#include "io/image_read.h"
#include "io/json_file.h"
#include "io/request_json.h"
#include "io/safetensors.h"
#include "pipeline/generation.h"
#include "sched/scheduler.h"
#include "edit_checks.h"
#include "test_support.h"

#include <QProcess>
#include <QtTest>

#include <cmath>
#include <fstream>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb_image_write.h>

using namespace fisedit;

namespace {

using test::latents_changed_outside;
using test::pixels_changed_outside;
using test::relative_l2;
using test::solid_mask;

// A picture with structure: ramps and a square.
Image8 test_picture(int width, int height) {
  Image8 image{width, height, 3, std::vector<std::uint8_t>(static_cast<std::size_t>(width) * height * 3)};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      auto* p = &image.pixels[(static_cast<std::size_t>(y) * width + x) * 3];
      const bool square = x > width / 4 && x < 3 * width / 4 && y > height / 4 && y < 3 * height / 4;
      p[0] = square ? 200 : static_cast<std::uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = square ? 40 : static_cast<std::uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = square ? 90 : static_cast<std::uint8_t>((x + y) * 255 / std::max(1, width + height - 2));
    }
  return image;
}

std::vector<float> to_float(const Image8& image) { return {image.pixels.begin(), image.pixels.end()}; }

bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

std::filesystem::path golden_dir() { return std::filesystem::path(FISEDIT_SOURCE_DIR) / "tests" / "data"; }

struct Run {
  int exit_code;
  QString out, err;
};

Run run_cli(const QStringList& args) {
  QProcess p;
  p.start(FISEDIT_CLI_PATH, args);
  p.waitForFinished(600000);
  return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, QString::fromUtf8(p.readAllStandardOutput()),
          QString::fromUtf8(p.readAllStandardError())};
}

void write_jpeg(const std::filesystem::path& path, const Image8& image) {
  QVERIFY(stbi_write_jpg(path.string().c_str(), image.width, image.height, image.channels, image.pixels.data(), 95));
}

}  // namespace

class TestImg2Img : public QObject {
  Q_OBJECT

  CpuBackend backend_;
  std::shared_ptr<const LoadedModel> sd15_ =
      std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd15" / "model"));
  std::shared_ptr<const LoadedModel> sd2_ =
      std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));

  GenerationRequest img2img(const std::string& scheduler, float strength, int steps, int size = 64) const {
    GenerationRequest r{"a photo of a cat", "", 7, steps, 7.5f, scheduler, size, size, std::nullopt};
    r.init_image = test_picture(size, size);
    r.strength = strength;
    r.init_image_name = "picture.png";
    return r;
  }

private slots:
  // diffusers' get_timesteps: init_timestep = min(int(steps * strength), steps); start = steps - it.
  void strength_maps_to_the_first_step() {
    QCOMPARE(img2img_start_step(10, 0.7f), 3);  // 10 * 0.7 is 7 in Python, not int(6.99999988)
    QCOMPARE(img2img_start_step(8, 0.6f), 4);
    QCOMPARE(img2img_start_step(8, 0.75f), 2);
    QCOMPARE(img2img_start_step(5, 1.0f), 0);
    QCOMPARE(img2img_start_step(50, 0.75f), 13);
    QCOMPARE(img2img_start_step(20, 0.3f), 14);
    QCOMPARE(img2img_start_step(4, 0.2f), 4);  // no step: refused by resolve
    GenerationRequest r;
    QCOMPARE(start_step(r), 0);
    r.steps = 10;
    r.strength = 0.7f;
    r.init_image = test_picture(8, 8);
    QCOMPARE(start_step(r), 3);
  }

  void every_sampler_runs_from_a_mid_schedule_start_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<QString>("model");
    for (const auto& name : scheduler_names()) {
      QTest::newRow((name + " sd15").c_str()) << QString::fromStdString(name) << "sd15";
      QTest::newRow((name + " sd2").c_str()) << QString::fromStdString(name) << "sd2";
    }
  }

  void every_sampler_runs_from_a_mid_schedule_start() {
    QFETCH(QString, scheduler);
    QFETCH(QString, model);
    StableDiffusion sd(model == "sd15" ? sd15_ : sd2_, backend_);
    const auto r = img2img(scheduler.toStdString(), 0.5f, 6);
    int reported = 0, total = 0;
    const auto result = sd.generate(r, [&](const GenerationProgress& p) {
      reported = p.step;
      total = p.total;
    });
    QCOMPARE(total, 3);  // 6 steps at strength 0.5: the last 3
    QCOMPARE(reported, 3);
    QVERIFY(all_finite(result.latents.to_f32()));
    QVERIFY(all_finite(result.decoded.to_f32()));
    QCOMPARE(result.image.width, 64);
    QCOMPARE(result.image.height, 64);
    // The cached form runs the same steps and keeps exactly those.
    const auto cached = sd.generate_cached(r);
    QCOMPARE(cached.steps.size(), std::size_t{3});
    QCOMPARE(cached.latents.size(), std::size_t{4});
    const double error = relative_l2(cached.result.latents.to_f32(), result.latents.to_f32());
    QVERIFY2(error < 1e-5, qPrintable(QString::number(error)));
  }

  // add_noise in each sampler's convention, at the start step's noise level.
  void add_noise_follows_each_sampler() {
    for (const auto& name : scheduler_names()) {
      auto s = make_scheduler(name, sd15_->scheduler);
      s->set_timesteps(10);
      const std::vector<float> one{1.0f}, zero{0.0f};
      const float signal = s->add_noise(one, zero, 4)[0];
      const float noise = s->add_noise(zero, one, 4)[0];
      const bool sigma_based = name.rfind("euler", 0) == 0;
      if (sigma_based) {
        QCOMPARE(signal, 1.0f);  // x0 + sigma noise
        QVERIFY(noise > 0.5f && noise < 20.0f);
      } else {
        QVERIFY2(std::fabs(signal * signal + noise * noise - 1.0f) < 1e-5, name.c_str());  // variance preserving
      }
      // Later steps are less noisy.
      QVERIFY2(s->add_noise(zero, one, 7)[0] < noise, name.c_str());
      QVERIFY_THROWS_EXCEPTION(Error, s->add_noise(one, zero, 10));
    }
    // DDIM: sqrt(alpha_bar) at timestep 501 (leading spacing, 10 steps, offset 1: step 4 is t = 501).
    auto ddim = make_scheduler("ddim", sd15_->scheduler);
    ddim->set_timesteps(10);
    QCOMPARE(ddim->timesteps()[4], std::int64_t{501});
  }

  // DPM++ 2M starts its history empty at the start step: steps must then go on in order from there.
  void multistep_history_starts_at_the_begin_index() {
    auto s = make_scheduler("dpmpp2m", sd15_->scheduler);
    s->set_timesteps(8);
    const std::vector<float> x(16, 0.5f), out(16, 0.1f);
    QVERIFY_THROWS_EXCEPTION(Error, s->step(out, 3, x));  // not the start
    s->set_begin_index(3);
    const auto a = s->step(out, 3, x);
    const auto b = s->step(out, 4, a);
    QVERIFY(all_finite(b));
    // Restarting at the begin index forgets the history: the same first step again.
    QCOMPARE(s->step(out, 3, x), a);
    s->set_timesteps(8);
    QCOMPARE(s->begin_index(), 0);
  }

  void bad_requests_are_refused() {
    StableDiffusion sd(sd15_, backend_);
    auto r = img2img("ddim", 0.0f, 8);
    QVERIFY_THROWS_EXCEPTION(Error, sd.resolve(r));
    r.strength = 1.5f;
    QVERIFY_THROWS_EXCEPTION(Error, sd.resolve(r));
    r = img2img("ddim", 0.2f, 4);  // int(0.8) = 0 steps
    try {
      sd.resolve(r);
      QFAIL("resolve accepted a strength that runs no step");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("runs no step") != std::string::npos, e.what());
    }
  }

  // The image is fitted to the request's size; with no size, its own rounded down to multiples of 8.
  void the_image_is_fitted_to_the_size() {
    StableDiffusion sd(sd15_, backend_);
    GenerationRequest r = img2img("ddim", 0.5f, 4);
    r.width = r.height = 0;
    r.init_image = test_picture(77, 45);
    auto resolved = sd.resolve(r);
    QCOMPARE(resolved.width, 72);
    QCOMPARE(resolved.height, 40);
    QCOMPARE(resolved.init_image->width, 72);
    QCOMPARE(resolved.init_image->channels, 3);
    r.width = 64;
    r.height = 64;
    resolved = sd.resolve(r);
    QCOMPARE(resolved.init_image->width, 64);
    QCOMPARE(resolved.init_image->height, 64);
    // A solid colour stays that colour; grey and alpha become RGB.
    Image8 grey{30, 50, 1, std::vector<std::uint8_t>(30 * 50, 123)};
    const auto fitted = fit_image(grey, 16, 8);
    QCOMPARE(fitted.channels, 3);
    QVERIFY(std::all_of(fitted.pixels.begin(), fitted.pixels.end(), [](std::uint8_t v) { return v == 123; }));
    const auto same = test_picture(32, 24);
    QVERIFY(fit_image(same, 32, 24).pixels == same.pixels);
  }

  // Strength near 0 keeps the picture (its VAE round trip); more strength moves further from it. The
  // round trip is of the latent the run samples (diffusers' latent_dist.sample: the tiny random VAE's
  // variance is far larger than a trained one's, so its mean would be another picture).
  void small_strength_stays_close_to_the_input() {
    StableDiffusion sd(sd15_, backend_);
    const auto start = sd.init_image_latents(img2img("ddim", 0.05f, 20));
    const auto round_trip = to_float(sd.decode_image(start));
    std::vector<double> distances, pixel_distances;
    for (const float strength : {0.05f, 0.25f, 0.5f, 1.0f}) {
      auto r = img2img("ddim", strength, 20);
      const auto result = sd.generate(r);
      distances.push_back(relative_l2(result.latents.to_f32(), start.to_f32()));
      pixel_distances.push_back(relative_l2(to_float(result.image), round_trip));
    }
    qInfo() << "latent distances" << distances << "pixel distances" << pixel_distances;
    QVERIFY2(distances[0] < 0.25 * distances.back(), qPrintable(QString("strength 0.05: %1").arg(distances[0])));
    QVERIFY2(pixel_distances[0] < 0.5 * pixel_distances.back(), qPrintable(QString("strength 0.05: %1").arg(pixel_distances[0])));
    for (std::size_t i = 1; i < distances.size(); ++i)
      QVERIFY2(distances[i] > distances[i - 1],
               qPrintable(QString("distance %1 at step %2 after %3").arg(distances[i]).arg(i).arg(distances[i - 1])));
  }

  void same_seed_same_result() {
    StableDiffusion sd(sd15_, backend_);
    for (const char* name : {"ddim", "euler_a"}) {
      auto r = img2img(name, 0.75f, 8);
      const auto a = sd.generate(r);
      const auto b = sd.generate(r);
      QCOMPARE(a.latents.to_f32(), b.latents.to_f32());
      QVERIFY(a.image.pixels == b.image.pixels);
      r.seed = 8;
      QVERIFY(sd.generate(r).latents.to_f32() != a.latents.to_f32());
    }
  }

  // An edit of an image-to-image result replays the same steps from the same noised image.
  void edits_of_an_img2img_result_data() {
    QTest::addColumn<QString>("scheduler");
    QTest::newRow("ddim") << "ddim";
    QTest::newRow("dpmpp2m") << "dpmpp2m";
    QTest::newRow("euler_a") << "euler_a";
    QTest::newRow("euler_karras") << "euler_karras";
  }

  void edits_of_an_img2img_result() {
    QFETCH(QString, scheduler);
    StableDiffusion sd(sd2_, backend_);
    const auto request = img2img(scheduler.toStdString(), 0.75f, 8, 128);
    const auto base = sd.generate_cached(request);
    QCOMPARE(base.steps.size(), std::size_t{6});

    // A full mask is the dense image-to-image generation with the new prompt.
    EditRequest full{"a photo of a dog", "", MaskMode::painted, solid_mask(128, 128, 255)};
    const auto whole = sd.edit(base, full);
    auto dense_request = request;
    dense_request.prompt = "a photo of a dog";
    QVERIFY(is_prompt_edit(sd.resolve(request), sd.resolve(dense_request)));
    const auto dense = sd.generate(dense_request);
    const double error = relative_l2(whole.generation.result.latents.to_f32(), dense.latents.to_f32());
    QVERIFY2(error < 1e-5, qPrintable(QString::number(error)));

    // Outside the mask latents and pixels identical; the sparse route equals the dense reference.
    Image8 painted = solid_mask(128, 128, 0);
    for (int y = 30; y < 90; ++y)
      for (int x = 40; x < 110; ++x) painted.pixels[static_cast<std::size_t>(y) * 128 + x] = 255;
    EditRequest sparse{.prompt = "a photo of a cat wearing a hat", .mask_mode = MaskMode::intersect, .painted_mask = painted};
    sparse.detect_steps = 2;
    auto reference = sparse;
    reference.dense_reference = true;
    const auto a = sd.edit(base, sparse);
    const auto b = sd.edit(base, reference);
    QVERIFY(a.stats.edit_fraction > 0.0 && a.stats.edit_fraction < 1.0);
    QCOMPARE(latents_changed_outside(base, a), 0);
    QCOMPARE(pixels_changed_outside(base.result.image, a.generation.result.image, a.changed_region), 0);
    QCOMPARE(a.mask.values, b.mask.values);
    const double sparse_error = relative_l2(a.generation.latents.back(), b.generation.latents.back());
    QVERIFY2(sparse_error < 1e-5, qPrintable(QString::number(sparse_error)));
    QVERIFY(a.generation.result.image.pixels != base.result.image.pixels);
    // The edit is itself an image-to-image node: edited again, it keeps its outside too.
    QVERIFY(a.generation.request.init_image.has_value());
    EditRequest again{.prompt = "a photo of a cat wearing a blue hat", .mask_mode = MaskMode::intersect, .painted_mask = painted};
    again.detect_steps = 1;
    const auto chained = sd.edit(a.generation, again);
    QCOMPARE(latents_changed_outside(a.generation, chained), 0);

    // Another start is not a prompt edit.
    auto other = request;
    other.prompt = "a photo of a dog";
    other.strength = 0.5f;
    QVERIFY(!is_prompt_edit(sd.resolve(request), sd.resolve(other)));
    other = dense_request;
    other.init_image->pixels[0] ^= 1;
    QVERIFY(!is_prompt_edit(sd.resolve(request), sd.resolve(other)));
    other = dense_request;
    other.init_image.reset();
    QVERIFY(!is_prompt_edit(sd.resolve(request), sd.resolve(other)));
  }

  void request_json_and_a1111_round_trip() {
    auto r = img2img("euler_a", 0.6f, 20);
    const auto json = to_json(r);
    QCOMPARE(json.at("init_image").get<std::string>(), std::string("picture.png"));
    const auto back = generation_request_from_json(json, "test");
    QCOMPARE(back.init_image_name, r.init_image_name);
    QCOMPARE(back.strength, 0.6f);
    QVERIFY(!back.init_image);  // the pixels are the reader's to load
    auto missing = json;
    missing.erase("strength");
    QVERIFY_THROWS_EXCEPTION(Error, generation_request_from_json(missing, "test"));
    // Text to image writes neither key.
    GenerationRequest plain{"a", "", 1, 10, 7.5f, "ddim", 64, 64, std::nullopt};
    QVERIFY(!to_json(plain).contains("strength"));
    QVERIFY(!to_json(plain).contains("init_image"));

    const auto text = a1111_parameters(r, "tiny");
    QVERIFY2(text.find("Denoising strength: 0.6") != std::string::npos, text.c_str());
    const auto p = parse_a1111_parameters(text);
    QVERIFY(p.denoising_strength);
    QCOMPARE(*p.denoising_strength, 0.6f);
    QCOMPARE(*p.scheduler, std::string("euler_a"));
    QVERIFY(!parse_a1111_parameters(a1111_parameters(plain, "tiny")).denoising_strength);
  }

  void jpeg_and_png_are_read() {
    test::TempDir dir;
    const auto picture = test_picture(40, 24);
    write_png(dir / "a.png", picture);
    QVERIFY(read_image(dir / "a.png").pixels == picture.pixels);
    write_jpeg(dir / "a.jpg", picture);
    const auto jpeg = read_image(dir / "a.jpg");
    QCOMPARE(jpeg.width, 40);
    QCOMPARE(jpeg.height, 24);
    QCOMPARE(jpeg.channels, 3);
    QVERIFY(relative_l2(to_float(jpeg), to_float(picture)) < 0.1);
    // Named in every error: not an image, a truncated JPEG, a header claiming a huge image.
    std::ofstream(dir / "text.jpg") << "hello";
    for (const auto& [name, what] : {std::pair{"text.jpg", "not a PNG or JPEG"}, std::pair{"missing.jpg", "cannot open"}}) {
      try {
        read_image(dir / name);
        QFAIL("read a file that is no image");
      } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find(name) != std::string::npos && std::string(e.what()).find(what) != std::string::npos,
                 e.what());
      }
    }
    std::string bytes;
    {
      std::ifstream in(dir / "a.jpg", std::ios::binary);
      bytes.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(dir / "cut.jpg", std::ios::binary) << bytes.substr(0, 40);
    QVERIFY_THROWS_EXCEPTION(Error, read_image(dir / "cut.jpg"));
    // The SOF0 frame header's height and width (big-endian, after precision) set to 60000.
    const auto sof = bytes.find("\xff\xc0", 2);
    QVERIFY(sof != std::string::npos);
    std::string huge = bytes;
    huge[sof + 5] = huge[sof + 7] = static_cast<char>(0xea);
    huge[sof + 6] = huge[sof + 8] = static_cast<char>(0x60);
    std::ofstream(dir / "huge.jpg", std::ios::binary) << huge;
    try {
      read_image(dir / "huge.jpg");
      QFAIL("read a JPEG larger than fisedit reads");
    } catch (const Error& e) {
      QVERIFY2(std::string(e.what()).find("huge.jpg") != std::string::npos &&
                   std::string(e.what()).find("larger than") != std::string::npos,
               e.what());
    }
    // A Huffman table claiming 512 codes (16 counts of 32), and code bits that run out mid-block: Debian's
    // stb_image 2.27 decoded both with undefined behaviour (found by fuzz_png, UBSan); libjpeg-turbo
    // refuses them, naming the file.
    const auto dht = bytes.find("\xff\xc4", 2);
    QVERIFY(dht != std::string::npos);
    std::string overfull = bytes;
    for (std::size_t i = 0; i < 16; ++i) overfull[dht + 5 + i] = static_cast<char>(32);
    std::ofstream(dir / "huffman.jpg", std::ios::binary) << overfull;
    const auto sos = bytes.find("\xff\xda", 2);
    QVERIFY(sos != std::string::npos);
    std::string garbled = bytes;
    for (std::size_t i = sos + 14; i + 2 < garbled.size(); ++i) garbled[i] = static_cast<char>(0xfe);
    std::ofstream(dir / "garbled.jpg", std::ios::binary) << garbled;
    for (const char* name : {"huffman.jpg", "garbled.jpg"}) {
      try {
        read_image(dir / name);
        QFAIL(qPrintable(QStringLiteral("read %1").arg(QLatin1String(name))));
      } catch (const Error& e) {
        QVERIFY2(std::string(e.what()).find(std::string(name) + ": not a readable JPEG (") != std::string::npos, e.what());
      }
    }
  }

  void cli_end_to_end() {
    test::TempDir dir;
    write_jpeg(dir / "start.jpg", test_picture(64, 48));
    const QString model = QString::fromStdString((test::reference_dir() / "tiny-sd15" / "model").string());
    const QString out = QString::fromStdString((dir / "out.png").string());
    const auto r = run_cli({"generate", "--model", model, "--prompt", "a photo of a cat", "--seed", "3", "--steps", "8",
                            "--scheduler", "dpmpp2m", "--init-image", QString::fromStdString((dir / "start.jpg").string()),
                            "--strength", "0.5", "--device", "cpu", "--out", out});
    QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    QVERIFY2(r.err.contains("step 4/4"), qPrintable(r.err));
    const auto image = read_png(dir / "out.png");
    QCOMPARE(image.width, 64);
    QCOMPARE(image.height, 48);
    std::string parameters, record;
    for (const auto& [key, value] : read_png_text(dir / "out.png")) (key == "parameters" ? parameters : record) = value;
    QVERIFY2(parameters.find("Denoising strength: 0.5") != std::string::npos, parameters.c_str());
    const auto json = nlohmann::json::parse(record);
    QCOMPARE(json.at("init_image").get<std::string>(), std::string("start.jpg"));

    // Edit of an image-to-image result from the command line.
    const auto e = run_cli({"edit", "--model", model, "--prompt", "a photo of a cat", "--edit-prompt", "a photo of a dog",
                            "--seed", "3", "--steps", "8", "--init-image", QString::fromStdString((dir / "start.jpg").string()),
                            "--device", "cpu", "--out", QString::fromStdString((dir / "edit.png").string())});
    QVERIFY2(e.exit_code == 0, qPrintable(e.err));

    const auto bad = run_cli({"generate", "--model", model, "--prompt", "x", "--strength", "0.5", "--out", out});
    QVERIFY(bad.exit_code != 0);
    QVERIFY2(bad.err.contains("--init-image"), qPrintable(bad.err));
    const auto missing = run_cli({"generate", "--model", model, "--prompt", "x", "--init-image",
                                  QString::fromStdString((dir / "nope.jpg").string()), "--out", out});
    QVERIFY(missing.exit_code != 0);
    QVERIFY2(missing.err.contains("nope.jpg"), qPrintable(missing.err));
  }

  // diffusers' StableDiffusionImg2ImgPipeline on tiny-sd15 (app/tools/img2img_golden.py).
  void matches_diffusers_data() {
    QTest::addColumn<QString>("name");
    if (!std::filesystem::exists(golden_dir() / "img2img-golden.json")) {
      QTest::newRow("no golden") << "";
      return;
    }
    const auto meta = read_json_file(golden_dir() / "img2img-golden.json");  // kept alive over the loop
    for (const auto& [name, value] : meta.at("cases").items()) QTest::newRow(name.c_str()) << QString::fromStdString(name);
  }

  void matches_diffusers() {
    QFETCH(QString, name);
    if (name.isEmpty())
      QSKIP("tests/data/img2img-golden.safetensors and .json are absent: run app/tools/img2img_golden.py "
            "(diffusers' StableDiffusionImg2ImgPipeline) to make them");
    const auto meta = read_json_file(golden_dir() / "img2img-golden.json").at("cases").at(name.toStdString());
    const auto golden = SafetensorsFile::open(golden_dir() / "img2img-golden.safetensors");
    auto model = std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd15" / "model"));
    nlohmann::json config = meta.at("scheduler_config");
    config["_class_name"] = meta.at("scheduler_class");
    model->scheduler = SchedulerConfig::from_json(config, "img2img-golden.json");
    StableDiffusion sd(model, backend_);

    const auto init = golden.tensor("img2img.init_image").to_f32();
    Image8 picture{meta.at("width").get<int>(), meta.at("height").get<int>(), 3, {}};
    for (const float v : init) picture.pixels.push_back(static_cast<std::uint8_t>(v));
    const double mean_error =
        relative_l2(sd.encode_image(picture).to_f32(), golden.tensor("img2img.latent_mean").to_f32());
    QVERIFY2(mean_error < 1e-4, qPrintable(QString("latent mean: %1").arg(mean_error)));

    GenerationRequest r{meta.at("prompt"), meta.at("negative_prompt"), meta.at("seed").get<std::uint64_t>(),
                        meta.at("steps").get<int>(), meta.at("guidance_scale").get<float>(), meta.at("scheduler"),
                        picture.width, picture.height, std::nullopt};
    r.init_image = picture;
    r.strength = meta.at("strength").get<float>();
    QCOMPARE(start_step(r), meta.at("start_step").get<int>());
    const auto cached = sd.generate_cached(r);
    const std::string key = "img2img." + name.toStdString();
    const double start_error = relative_l2(cached.latents.front(), golden.tensor(key + ".init_latents").to_f32());
    QVERIFY2(start_error < 1e-4, qPrintable(QString("start latents: %1").arg(start_error)));
    const double final_error = relative_l2(cached.result.latents.to_f32(), golden.tensor(key + ".final_latents").to_f32());
    QVERIFY2(final_error < 1e-3, qPrintable(QString("final latents: %1").arg(final_error)));
    // The image as diffusers returns it: HWC in [0, 1].
    const auto decoded = cached.result.decoded.to_f32();  // [1, 3, H, W] in [-1, 1]
    const std::size_t hw = static_cast<std::size_t>(picture.width) * picture.height;
    std::vector<float> hwc(decoded.size());
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t p = 0; p < hw; ++p) hwc[p * 3 + c] = std::clamp(decoded[c * hw + p] / 2.0f + 0.5f, 0.0f, 1.0f);
    const double image_error = relative_l2(hwc, golden.tensor(key + ".image").to_f32());
    qInfo("%s: relative L2 latent mean %.2e, start latents %.2e, final latents %.2e, image %.2e", qPrintable(name),
          mean_error, start_error, final_error, image_error);
    QVERIFY2(image_error < 1e-3, qPrintable(QString("image: %1").arg(image_error)));
  }
};

QTEST_GUILESS_MAIN(TestImg2Img)
#include "test_img2img.moc"
