// Text-to-image end to end on the CPU backend against diffusers: the pipelines from given initial
// latents (both tiny models, DDIM and DPM-Solver++), seeded generation (torch-compatible noise), the
// single-file form, progress (with the latents of every step), cancellation and bad requests.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/a1111_parameters.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "pipeline/generation.h"
#include "test_support.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

using namespace fisedit;

namespace {

using test::relative_l2;

std::shared_ptr<const LoadedModel> load(const std::string& name, bool single_file = false) {
  const auto ref = test::reference_dir() / name;
  if (single_file) return std::make_shared<LoadedModel>(load_model(ref / "single-file.safetensors", {.config_dir = ref / "model"}));
  return std::make_shared<LoadedModel>(load_model(ref / "model"));
}

// seeded/karras-ancestral.json: per golden, the request and the scheduler class and config diffusers
// ran. Its DPM-Solver config holds lambda_min_clipped = -Infinity, which JSON cannot spell; it is
// diffusers' default (no clipping), read here as null.
nlohmann::json karras_ancestral_entries() {
  std::ifstream in(test::reference_dir() / "seeded" / "karras-ancestral.json");
  std::stringstream text;
  text << in.rdbuf();
  std::string json = text.str();
  for (std::size_t at; (at = json.find("-Infinity")) != std::string::npos;) json.replace(at, 9, "null");
  return nlohmann::json::parse(json);
}

// Largest |round(255 x) - ours| over a golden image [1, H, W, 3] in [0, 1].
int worst_8bit(const Image8& ours, const std::vector<float>& golden) {
  if (ours.pixels.size() != golden.size()) return 256;
  int worst = 0;
  for (std::size_t i = 0; i < golden.size(); ++i)
    worst = std::max(worst, std::abs(int(ours.pixels[i]) - int(std::nearbyint(255.0f * golden[i]))));
  return worst;
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

}  // namespace

class TestPipeline : public QObject {
  Q_OBJECT

  CpuBackend backend_;

private slots:
  void golden_pipelines_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<bool>("single_file");
    for (const char* m : {"tiny-sd2", "tiny-sd15"})
      for (const char* s : {"ddim", "dpmpp2m"}) {
        QTest::addRow("%s %s", m, s) << m << s << false;
        QTest::addRow("%s %s single file", m, s) << m << s << true;
      }
  }

  void golden_pipelines() {
    QFETCH(QString, model);
    QFETCH(QString, scheduler);
    QFETCH(bool, single_file);
    const auto golden = SafetensorsFile::open(test::reference_dir() / model.toStdString() / "golden.safetensors");
    const auto key = "pipeline." + scheduler.toStdString() + ".";
    const auto init = golden.tensor(key + "init_latents");
    StableDiffusion sd(load(model.toStdString(), single_file), backend_);
    GenerationRequest r;
    r.prompt = "a photo of a cat";
    r.steps = 10;
    r.cfg_scale = 7.5f;
    r.scheduler = scheduler.toStdString();
    r.height = static_cast<int>(init.dim(2)) * 8;
    r.width = static_cast<int>(init.dim(3)) * 8;
    r.initial_noise = Tensor::from_f32(init.shape(), init.to_f32());
    int calls = 0;
    std::vector<float> last_latents;
    const auto result = sd.generate(r, [&](const GenerationProgress& p) {
      ++calls;
      QCOMPARE(p.total, 10);
      QCOMPARE(p.step, calls);
      // Every step carries its latents, for the UI's preview.
      QCOMPARE(p.latent_channels, static_cast<int>(init.dim(1)));
      QCOMPARE(p.latent_height, static_cast<int>(init.dim(2)));
      QCOMPARE(p.latent_width, static_cast<int>(init.dim(3)));
      QCOMPARE(static_cast<std::int64_t>(p.latents.size()), init.numel());
      last_latents.assign(p.latents.begin(), p.latents.end());
    });
    QCOMPARE(calls, 10);
    QVERIFY(last_latents == result.latents.to_f32());  // the last step's are the final latents
    const double latent_error = relative_l2(result.latents.to_f32(), golden.tensor(key + "final_latents").to_f32());
    const double image_error = relative_l2(result.decoded.to_f32(), golden.tensor(key + "image").to_f32());
    qInfo("%s: latents rel L2 %.3g, image rel L2 %.3g", qPrintable(QTest::currentDataTag()), latent_error, image_error);
    QVERIFY2(latent_error <= 1e-3, qPrintable(QString::number(latent_error)));
    QVERIFY2(image_error <= 1e-3, qPrintable(QString::number(image_error)));
    QCOMPARE(result.image.width, 128);
    QCOMPARE(result.image.channels, 3);
  }

  void seeded_data() { test::seeded_golden_rows(); }

  void seeded() {
    QFETCH(QString, scheduler);
    QFETCH(QString, prompt);
    QFETCH(QString, negative);
    QFETCH(int, seed);
    QFETCH(int, steps);
    QFETCH(float, cfg);
    QFETCH(int, width);
    QFETCH(int, height);
    const auto golden = SafetensorsFile::open(test::reference_dir() / "seeded" / "golden.safetensors");
    const auto key = "seeded.tiny-sd2." + scheduler.toStdString() + ".";
    StableDiffusion sd(load("tiny-sd2"), backend_);
    GenerationRequest r{prompt.toStdString(), negative.toStdString(), static_cast<std::uint64_t>(seed), steps, cfg,
                        scheduler.toStdString(), width, height, std::nullopt};
    const auto result = sd.generate(r);
    const double latent_error = relative_l2(result.latents.to_f32(), golden.tensor(key + "latents").to_f32());
    QVERIFY2(latent_error <= 1e-3, qPrintable(QString::number(latent_error)));
    // 8-bit images within 1 (rounding).
    const auto image = golden.tensor(key + "image").to_f32();  // [1, H, W, 3] in [0, 1]
    QCOMPARE(result.image.pixels.size(), image.size());
    int worst = 0;
    for (std::size_t i = 0; i < image.size(); ++i)
      worst = std::max(worst, std::abs(int(result.image.pixels[i]) - int(std::nearbyint(255.0f * image[i]))));
    QVERIFY2(worst <= 1, qPrintable(QString("max 8-bit difference %1").arg(worst)));
  }

  // Euler a, DPM++ 2M Karras and Euler Karras: seeded generations on tiny-sd15 as diffusers made them
  // (seeded/karras-ancestral.*), the model run with the scheduler class and config the golden names.
  // Euler a's per-step noise continues the seed's generator after the initial latents.
  void karras_ancestral_data() {
    QTest::addColumn<QString>("scheduler");
    for (const char* s : {"euler_a", "dpmpp2m_karras", "euler_karras"}) QTest::newRow(s) << QString(s);
  }

  void karras_ancestral() {
    QFETCH(QString, scheduler);
    const std::string key = "seeded.tiny-sd15." + scheduler.toStdString();
    const auto entry = karras_ancestral_entries().at(key);
    QCOMPARE(QString::fromStdString(entry.at("scheduler").get<std::string>()), scheduler);
    nlohmann::json config = entry.at("scheduler_config");
    config["_class_name"] = entry.at("scheduler_class");
    const auto loaded = load("tiny-sd15");
    auto model = std::make_shared<LoadedModel>(*loaded);
    model->scheduler = SchedulerConfig::from_json(config, "karras-ancestral.json");
    StableDiffusion sd(model, backend_);
    const GenerationRequest r{entry.at("prompt").get<std::string>(), entry.at("negative_prompt").get<std::string>(),
                              entry.at("seed").get<std::uint64_t>(), entry.at("steps").get<int>(),
                              entry.at("guidance_scale").get<float>(), scheduler.toStdString(),
                              entry.at("width").get<int>(), entry.at("height").get<int>(), std::nullopt};
    const auto result = sd.generate(r);
    QCOMPARE(result.scheduler, scheduler.toStdString());
    const auto golden = SafetensorsFile::open(test::reference_dir() / "seeded" / "karras-ancestral.safetensors");
    const auto want = golden.tensor(key + ".latents").to_f32();
    const auto got = result.latents.to_f32();
    QCOMPARE(got.size(), want.size());
    const double latent_error = relative_l2(got, want);
    const auto image = golden.tensor(key + ".image").to_f32();  // [1, H, W, 3] in [0, 1]
    const int worst = worst_8bit(result.image, image);
    // The decoded image [1, 3, H, W] in [-1, 1] as diffusers' output_type="np": x / 2 + 0.5, clamped, HWC.
    const auto decoded = result.decoded.to_f32();
    const std::size_t plane = decoded.size() / 3;
    std::vector<float> ours(decoded.size());
    for (std::size_t p = 0; p < plane; ++p)
      for (std::size_t c = 0; c < 3; ++c) ours[p * 3 + c] = std::clamp(decoded[c * plane + p] / 2 + 0.5f, 0.0f, 1.0f);
    qInfo("%s: latents rel L2 %.3g, max abs %.3g; image rel L2 %.3g, max abs %.3g, max 8-bit difference %d", key.c_str(),
          latent_error, max_abs(got, want), relative_l2(ours, image), max_abs(ours, image), worst);
    QVERIFY2(latent_error <= 1e-3, qPrintable(QString::number(latent_error)));
    QVERIFY2(worst <= 1, qPrintable(QString("max 8-bit difference %1").arg(worst)));

    if (scheduler == "dpmpp2m_karras") {
      // Karras sigmas span the training range whatever the spacing: the model's own (DDIM) config
      // gives the same image.
      StableDiffusion own(loaded, backend_);
      QVERIFY(own.generate(r).latents.to_f32() == got);
    }
  }

  // The sampler an empty request runs: the model's own, Karras where its config asks for it.
  void default_sampler_follows_the_config() {
    QCOMPARE(sampler_for_class("EulerAncestralDiscreteScheduler"), std::string("euler_a"));
    QCOMPARE(sampler_for_class("PNDMScheduler"), std::string("ddim"));
    const auto config = [](const char* class_name, bool karras) {
      return SchedulerConfig::from_json({{"_class_name", class_name}, {"use_karras_sigmas", karras}}, "test");
    };
    QCOMPARE(sampler_for_config(config("DPMSolverMultistepScheduler", true)), std::string("dpmpp2m_karras"));
    QCOMPARE(sampler_for_config(config("DPMSolverMultistepScheduler", false)), std::string("dpmpp2m"));
    QCOMPARE(sampler_for_config(config("EulerDiscreteScheduler", true)), std::string("euler_karras"));
    QCOMPARE(sampler_for_config(config("DDIMScheduler", true)), std::string("ddim"));
  }

  void edit_progress_carries_latents() {
    StableDiffusion sd(load("tiny-sd2"), backend_);
    GenerationRequest r;
    r.prompt = "a photo of a cat";
    r.steps = 4;
    r.width = r.height = 64;
    const auto base = sd.generate_cached(r);
    EditRequest e;
    e.prompt = "a photo of a dog";
    int calls = 0;
    std::vector<float> last_latents;
    const auto edited = sd.edit(base, e, [&](const GenerationProgress& p) {
      QCOMPARE(p.step, ++calls);
      QCOMPARE(p.latent_channels * p.latent_height * p.latent_width, 4 * 8 * 8);
      QCOMPARE(p.latents.size(), std::size_t{4 * 8 * 8});
      last_latents.assign(p.latents.begin(), p.latents.end());
    });
    QCOMPARE(calls, 4);
    QVERIFY(last_latents == edited.generation.result.latents.to_f32());
  }

  void cancel_between_steps() {
    StableDiffusion sd(load("tiny-sd15"), backend_);
    std::stop_source stop;
    GenerationRequest r;
    r.prompt = "a cat";
    r.steps = 8;
    int last = 0;
    try {
      sd.generate(r, [&](const GenerationProgress& p) {
        last = p.step;
        if (p.step == 3) stop.request_stop();
      }, stop.get_token());
      QFAIL("generation ran to the end");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::cancelled);
    }
    QCOMPARE(last, 3);
    // The pipeline is still usable after a cancel.
    r.steps = 2;
    QCOMPARE(sd.generate(r).latents.shape(), (Shape{1, 4, 16, 16}));
  }

  void bad_requests_data() {
    QTest::addColumn<int>("width");
    QTest::addColumn<int>("height");
    QTest::addColumn<int>("steps");
    QTest::addColumn<float>("cfg");
    QTest::addColumn<QString>("scheduler");
    QTest::addColumn<QString>("message");
    QTest::newRow("size not a multiple of 8") << 130 << 128 << 10 << 7.5f << "ddim" << "not a multiple of 8";
    QTest::newRow("zero steps") << 128 << 128 << 0 << 7.5f << "ddim" << "steps must be between 1 and 1000";
    QTest::newRow("unknown scheduler") << 128 << 128 << 10 << 7.5f << "plms" << "unknown scheduler 'plms'";
    QTest::newRow("negative cfg") << 128 << 128 << 10 << -1.0f << "ddim" << "CFG scale must be a non-negative number";
    QTest::newRow("nan cfg") << 128 << 128 << 10 << std::nanf("") << "ddim" << "CFG scale";
  }

  void bad_requests() {
    QFETCH(int, width);
    QFETCH(int, height);
    QFETCH(int, steps);
    QFETCH(float, cfg);
    QFETCH(QString, scheduler);
    QFETCH(QString, message);
    StableDiffusion sd(load("tiny-sd2"), backend_);
    GenerationRequest r{"a cat", "", 1, steps, cfg, scheduler.toStdString(), width, height, std::nullopt};
    try {
      sd.generate(r);
      QFAIL("a bad request was accepted");
    } catch (const Error& e) {
      QCOMPARE(e.code(), ErrorCode::invalid_argument);
      QVERIFY2(QString(e.what()).contains(message), e.what());
    }
  }

  // 136 x 72 pixels: 17 x 9 latents, which the U-Net's levels cannot halve evenly.
  void sizes_that_are_multiples_of_8_only() {
    StableDiffusion sd(load("tiny-sd15"), backend_);
    GenerationRequest r{"a cat", "", 3, 2, 7.5f, "euler", 136, 72, std::nullopt};
    const auto result = sd.generate(r);
    QCOMPARE(result.latents.shape(), (Shape{1, 4, 9, 17}));
    QCOMPARE(result.image.width, 136);
    QCOMPARE(result.image.height, 72);
    for (float v : result.decoded.to_f32()) QVERIFY(std::isfinite(v));
  }

  void a1111_parameters_text() {
    GenerationRequest r{"a cat", "blurry", 42, 20, 7.5f, "dpmpp2m", 512, 768, std::nullopt};
    QCOMPARE(QString::fromStdString(a1111_parameters(r, "sd15")),
             QString("a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: 42, Size: 512x768, Model: sd15"));
    r.negative_prompt.clear();
    QVERIFY(!QString::fromStdString(a1111_parameters(r, "m")).contains("Negative prompt"));
  }

  // Reading a parameters text back: ours round-trips; AUTOMATIC1111's longer ones (multi-line prompts,
  // extra keys, quoted values with commas) give what fisedit understands; a text without a parameter
  // line is all prompt; numbers that are not numbers are left unset.
  void a1111_parameters_read_back() {
    const GenerationRequest r{"a cat\non a sofa", "blurry", 4294967296, 33, 6.5f, "euler", 640, 448, std::nullopt};
    const auto ours = parse_a1111_parameters(a1111_parameters(r, "sd15"));
    QCOMPARE(QString::fromStdString(ours.prompt), QString("a cat\non a sofa"));
    QCOMPARE(QString::fromStdString(ours.negative_prompt), QString("blurry"));
    QCOMPARE(ours.seed, std::optional<std::uint64_t>(4294967296));
    QCOMPARE(ours.steps, std::optional<int>(33));
    QCOMPARE(ours.cfg_scale, std::optional<float>(6.5f));
    QCOMPARE(ours.scheduler, std::optional<std::string>("euler"));
    QCOMPARE(ours.width, std::optional<int>(640));
    QCOMPARE(ours.height, std::optional<int>(448));
    QVERIFY(ours.unknown_sampler.empty());

    const auto theirs = parse_a1111_parameters(
        "masterpiece, a castle\r\non a hill\r\nNegative prompt: lowres, bad anatomy\r\nworst quality\r\n"
        "Steps: 28, Sampler: Euler a, Schedule type: Karras, CFG scale: 5, Seed: 123, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5, Lora hashes: \"detail: 1a2b, style: 3c4d\", Version: v1.9.4");
    QCOMPARE(QString::fromStdString(theirs.prompt), QString("masterpiece, a castle\non a hill"));
    QCOMPARE(QString::fromStdString(theirs.negative_prompt), QString("lowres, bad anatomy\nworst quality"));
    QCOMPARE(theirs.steps, std::optional<int>(28));
    QCOMPARE(theirs.cfg_scale, std::optional<float>(5.0f));
    QCOMPARE(theirs.seed, std::optional<std::uint64_t>(123));
    QCOMPARE(theirs.width, std::optional<int>(512));
    // Euler a on Karras sigmas is not a sampler fisedit has; named in the single-name form.
    QVERIFY(!theirs.scheduler);
    QCOMPARE(QString::fromStdString(theirs.unknown_sampler), QString("Euler a Karras"));

    const auto prompt_only = parse_a1111_parameters("just a prompt, with commas: and colons");
    QCOMPARE(QString::fromStdString(prompt_only.prompt), QString("just a prompt, with commas: and colons"));
    QVERIFY(!prompt_only.steps && !prompt_only.seed && prompt_only.negative_prompt.empty());

    // Both of A1111's spellings of a schedule: one name (before 1.9, and what fisedit writes), or the
    // sampler and a "Schedule type" (1.9 on; "Automatic" is Karras for DPM++ 2M, plain for the others).
    const std::vector<std::pair<std::string, std::string>> samplers = {
        {"Sampler: Euler a", "euler_a"},
        {"Sampler: Euler a, Schedule type: Automatic", "euler_a"},
        {"Sampler: DPM++ 2M Karras", "dpmpp2m_karras"},
        {"Sampler: DPM++ 2M, Schedule type: Karras", "dpmpp2m_karras"},
        {"Sampler: DPM++ 2M, Schedule type: Automatic", "dpmpp2m_karras"},
        {"Sampler: DPM++ 2M, Schedule type: Uniform", "dpmpp2m"},
        {"Sampler: DPM++ 2M", "dpmpp2m"},
        {"Sampler: Euler Karras", "euler_karras"},
        {"Sampler: Euler, Schedule type: Karras", "euler_karras"},
        {"Sampler: Euler, Schedule type: Automatic", "euler"},
    };
    for (const auto& [text, name] : samplers) {
      const auto p = parse_a1111_parameters("a cat\nSteps: 20, " + text + ", CFG scale: 7, Seed: 1, Size: 512x512");
      QVERIFY2(p.scheduler == name, text.c_str());
      QVERIFY2(p.unknown_sampler.empty(), text.c_str());
    }
    for (const auto& [text, unknown] : std::vector<std::pair<std::string, std::string>>{
             {"Sampler: DPM++ SDE", "DPM++ SDE"}, {"Sampler: DPM++ 2M, Schedule type: Exponential", "DPM++ 2M Exponential"}}) {
      const auto p = parse_a1111_parameters("a cat\nSteps: 20, " + text + ", CFG scale: 7, Seed: 1, Size: 512x512");
      QVERIFY2(!p.scheduler, text.c_str());
      QCOMPARE(p.unknown_sampler, unknown);
    }
    // What fisedit writes reads back as the same sampler, for every sampler it has.
    for (const auto& name : scheduler_names()) {
      const GenerationRequest g{"a cat", "", 1, 20, 7.0f, name, 512, 512, std::nullopt};
      const auto text = a1111_parameters(g, "m");
      QVERIFY2(text.find("Sampler: " + a1111_sampler_name(name) + ",") != std::string::npos, text.c_str());
      QCOMPARE(parse_a1111_parameters(text).scheduler, std::optional<std::string>(name));
    }
    QCOMPARE(a1111_sampler_name("dpmpp2m_karras"), std::string("DPM++ 2M Karras"));
    QCOMPARE(a1111_sampler_name("euler_a"), std::string("Euler a"));

    const auto odd = parse_a1111_parameters("p\nSteps: many, Sampler: DDIM, Seed: -1, Size: big");
    QVERIFY(!odd.steps && !odd.seed && !odd.width && !odd.height);
    QCOMPARE(odd.scheduler, std::optional<std::string>("ddim"));
  }
};

QTEST_GUILESS_MAIN(TestPipeline)
#include "test_pipeline.moc"
