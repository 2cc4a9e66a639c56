// The samplers against diffusers: timesteps of 10/20/50-step runs and a 20-step rollout with a
// synthetic model, for both reference models (v-prediction and epsilon); timestep spacings and the
// Karras schedules' ends worked out by hand; Euler ancestral's per-step noise against torch's
// generator; and the errors a caller can provoke. (The Karras and ancestral samplers' goldens are whole
// seeded generations: test_pipeline.)
#include "core/error.h"
#include "core/torch_random.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "sched/scheduler.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>
#include <string>

using namespace fisedit;

namespace {

SchedulerConfig model_config(const QString& model) {
  const auto path =
      test::reference_dir() / model.toStdString() / "model" / "scheduler" / "scheduler_config.json";
  return SchedulerConfig::from_json(read_json_file(path), path);
}

SafetensorsFile model_goldens(const QString& model) {
  return SafetensorsFile::open(test::reference_dir() / model.toStdString() / "golden.safetensors");
}

// A config written for `class_name`, so that its spacing applies to that sampler.
SchedulerConfig spacing_config(const QString& class_name, const QString& spacing, int train_steps) {
  const nlohmann::json j = {{"_class_name", class_name.toStdString()},
                            {"num_train_timesteps", train_steps},
                            {"timestep_spacing", spacing.toStdString()},
                            {"steps_offset", 1}};
  return SchedulerConfig::from_json(j, "test");
}

// The rollout golden.json describes: model_output = 0.5 * inp + 0.1 * sin(3 * inp + t / 100).
std::vector<float> rollout(Scheduler& scheduler, std::vector<float> x) {
  scheduler.set_timesteps(20);
  for (int i = 0; i < scheduler.num_steps(); ++i) {
    const std::vector<float> inp = scheduler.scale_model_input(x, i);
    const float t = scheduler.model_timesteps()[static_cast<std::size_t>(i)] / 100.0f;
    std::vector<float> out(inp.size());
    for (std::size_t k = 0; k < inp.size(); ++k) out[k] = 0.5f * inp[k] + 0.1f * std::sin(3.0f * inp[k] + t);
    x = scheduler.step(out, i, x);
  }
  return x;
}

template <typename F>
void expect_error(F&& f, ErrorCode code, const char* fragment) {
  try {
    f();
    QFAIL("no error thrown");
  } catch (const Error& e) {
    QCOMPARE(e.code(), code);
    QVERIFY2(std::string(e.what()).find(fragment) != std::string::npos, e.what());
  }
}

void add_model_rows(bool with_steps) {
  for (const char* model : {"tiny-sd2", "tiny-sd15"})
    for (const char* name : {"ddim", "dpmpp2m", "euler"})
      for (int steps : with_steps ? std::vector<int>{10, 20, 50} : std::vector<int>{20})
        QTest::addRow("%s %s %d", model, name, steps) << QString(model) << QString(name) << steps;
}

}  // namespace

class TestSchedulers : public QObject {
  Q_OBJECT

private slots:
  void timesteps_golden_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("steps");
    add_model_rows(true);
  }

  void timesteps_golden() {
    QFETCH(QString, model);
    QFETCH(QString, name);
    QFETCH(int, steps);
    auto scheduler = make_scheduler(name.toStdString(), model_config(model));
    scheduler->set_timesteps(steps);
    const std::string key = "sched." + name.toStdString() + "." + std::to_string(steps) + ".timesteps";
    QVERIFY(scheduler->timesteps() == model_goldens(model).tensor(key).to_i64());
  }

  void rollout_golden_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("steps");
    add_model_rows(false);
  }

  void rollout_golden() {
    QFETCH(QString, model);
    QFETCH(QString, name);
    const SafetensorsFile goldens = model_goldens(model);
    const std::string prefix = "sched." + name.toStdString() + ".rollout.";
    // x0 already carries init_noise_sigma (Euler's is ~14.6 times the others').
    const std::vector<float> x0 = goldens.tensor(prefix + "x0").to_f32();
    const std::vector<float> want = goldens.tensor(prefix + "final").to_f32();
    auto scheduler = make_scheduler(name.toStdString(), model_config(model));
    const std::vector<float> got = rollout(*scheduler, x0);
    double diff = 0, norm = 0;
    for (std::size_t k = 0; k < want.size(); ++k) {
      diff += (static_cast<double>(got[k]) - want[k]) * (static_cast<double>(got[k]) - want[k]);
      norm += static_cast<double>(want[k]) * want[k];
    }
    const double rel = std::sqrt(diff / norm);
    QVERIFY2(rel <= 1e-5, qPrintable(QString("relative L2 error %1").arg(rel)));
    // set_timesteps restarts a sampler completely, multistep history included.
    QVERIFY(rollout(*scheduler, x0) == got);
  }

  void spacing_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<QString>("class_name");
    QTest::addColumn<QString>("spacing");
    QTest::addColumn<int>("train_steps");
    QTest::addColumn<int>("steps");
    QTest::addColumn<QList<qint64>>("expected");
    QTest::addColumn<QList<float>>("model_timesteps");  // empty: the same as expected
    // trailing: np.arange(T, 0, -T/N) rounded, minus 1. T/N = 333.3: 1000, 666.7, 333.3 -> 999, 666, 332.
    QTest::newRow("ddim trailing") << "ddim" << "DDIMScheduler" << "trailing" << 1000 << 3
                                   << QList<qint64>{999, 666, 332} << QList<float>{};
    // leading: arange(N) * (T // N) reversed, plus steps_offset 1: 750, 500, 250, 0 -> 751, 501, 251, 1.
    QTest::newRow("ddim leading") << "ddim" << "DDIMScheduler" << "leading" << 1000 << 4
                                  << QList<qint64>{751, 501, 251, 1} << QList<float>{};
    // linspace(0, T-1, N) rounded as numpy rounds, halves to even: 0, 2.5, 5 -> 0, 2, 5.
    QTest::newRow("ddim linspace halves to even") << "ddim" << "DDIMScheduler" << "linspace" << 6 << 3
                                                  << QList<qint64>{5, 2, 0} << QList<float>{};
    // DPM-Solver splits into N + 1 points and drops the lowest: linspace(0, 999, 5) = 0, 249.75, 499.5,
    // 749.25, 999 -> 0, 250, 500, 749, 999 -> 999, 749, 500, 250.
    QTest::newRow("dpmpp2m linspace") << "dpmpp2m" << "DPMSolverMultistepScheduler" << "linspace" << 1000 << 4
                                      << QList<qint64>{999, 749, 500, 250} << QList<float>{};
    // arange(1000, 0, -250) - 1.
    QTest::newRow("dpmpp2m trailing") << "dpmpp2m" << "DPMSolverMultistepScheduler" << "trailing" << 1000 << 4
                                      << QList<qint64>{999, 749, 499, 249} << QList<float>{};
    // T // (N + 1) = 200: 800, 600, 400, 200 (0 dropped), plus 1.
    QTest::newRow("dpmpp2m leading") << "dpmpp2m" << "DPMSolverMultistepScheduler" << "leading" << 1000 << 4
                                     << QList<qint64>{801, 601, 401, 201} << QList<float>{};
    // A DDIM config's spacing stays with DDIM: DPM-Solver falls back to its default, linspace.
    QTest::newRow("dpmpp2m from a ddim config") << "dpmpp2m" << "DDIMScheduler" << "leading" << 1000 << 4
                                                << QList<qint64>{999, 749, 500, 250} << QList<float>{};
    // Euler keeps linspace(0, 999, 3) = 999, 499.5, 0 unrounded; diffusers' int64 view truncates.
    QTest::newRow("euler linspace") << "euler" << "EulerDiscreteScheduler" << "linspace" << 1000 << 3
                                    << QList<qint64>{999, 499, 0} << QList<float>{999.0f, 499.5f, 0.0f};
    QTest::newRow("euler trailing") << "euler" << "EulerDiscreteScheduler" << "trailing" << 1000 << 3
                                    << QList<qint64>{999, 666, 332} << QList<float>{};
    QTest::newRow("euler leading") << "euler" << "EulerDiscreteScheduler" << "leading" << 1000 << 4
                                   << QList<qint64>{751, 501, 251, 1} << QList<float>{};
    // Euler ancestral spaces as Euler does: 1000 // 12 = 83, arange(12) * 83 reversed, plus 1.
    QTest::newRow("euler_a leading") << "euler_a" << "EulerAncestralDiscreteScheduler" << "leading" << 1000 << 12
                                     << QList<qint64>{914, 831, 748, 665, 582, 499, 416, 333, 250, 167, 84, 1}
                                     << QList<float>{};
    QTest::newRow("euler_a linspace") << "euler_a" << "EulerAncestralDiscreteScheduler" << "linspace" << 1000 << 3
                                      << QList<qint64>{999, 499, 0} << QList<float>{999.0f, 499.5f, 0.0f};
    // Its own class's options only: an EulerDiscreteScheduler config's spacing stays there.
    QTest::newRow("euler_a from an euler config") << "euler_a" << "EulerDiscreteScheduler" << "leading" << 1000 << 3
                                                  << QList<qint64>{999, 499, 0} << QList<float>{999.0f, 499.5f, 0.0f};
  }

  void spacing() {
    QFETCH(QString, name);
    QFETCH(QString, class_name);
    QFETCH(QString, spacing);
    QFETCH(int, train_steps);
    QFETCH(int, steps);
    QFETCH(QList<qint64>, expected);
    QFETCH(QList<float>, model_timesteps);
    auto scheduler = make_scheduler(name.toStdString(), spacing_config(class_name, spacing, train_steps));
    scheduler->set_timesteps(steps);
    QCOMPARE(QList<qint64>(scheduler->timesteps().begin(), scheduler->timesteps().end()), expected);
    if (model_timesteps.isEmpty())
      for (qint64 t : expected) model_timesteps.append(static_cast<float>(t));
    QCOMPARE(QList<float>(scheduler->model_timesteps().begin(), scheduler->model_timesteps().end()),
             model_timesteps);
  }

  // DPM++ 2M Karras spans the whole training range whatever the spacing: _convert_to_karras runs from
  // the last training sigma to the first, whose timesteps interpolate back to 999 and 0; in between the
  // timesteps fall, crowding towards 0 (rho = 7 spends most steps at low noise).
  void dpmpp2m_karras_schedule_data() {
    QTest::addColumn<QString>("spacing");
    QTest::addColumn<int>("steps");
    for (const char* spacing : {"leading", "linspace", "trailing"})
      for (int steps : {10, 15, 25}) QTest::addRow("%s %d", spacing, steps) << QString(spacing) << steps;
  }

  void dpmpp2m_karras_schedule() {
    QFETCH(QString, spacing);
    QFETCH(int, steps);
    auto karras = make_scheduler("dpmpp2m_karras", spacing_config("DPMSolverMultistepScheduler", spacing, 1000));
    karras->set_timesteps(steps);
    QCOMPARE(karras->num_steps(), steps);
    const auto& t = karras->timesteps();
    QCOMPARE(t.front(), std::int64_t{999});
    QCOMPARE(t.back(), std::int64_t{0});
    for (std::size_t i = 1; i < t.size(); ++i) QVERIFY(t[i] <= t[i - 1]);
    // Denser at the low end than an even spacing: the middle step is already below where an even
    // spacing of the range would be.
    const std::size_t mid = t.size() / 2;
    const double even = 999.0 * (1.0 - double(mid) / double(t.size() - 1));
    QVERIFY2(double(t[mid]) < even, qPrintable(QString("%1 vs %2").arg(t[mid]).arg(even)));
    QCOMPARE(QList<float>(karras->model_timesteps().begin(), karras->model_timesteps().end()),
             QList<float>(t.begin(), t.end()));
    QCOMPARE(QString(karras->name()), QString("dpmpp2m_karras"));
  }

  // Euler Karras runs between the sigmas of the first and last spaced timestep (leading: 901 and 1 at 10
  // steps), so it starts where Euler starts: the same initial noise scale and first input scale, and
  // fractional timesteps from 901 down to 1.
  void euler_karras_schedule_data() {
    QTest::addColumn<QString>("spacing");
    QTest::addColumn<float>("first");
    QTest::addColumn<float>("last");
    QTest::newRow("leading") << "leading" << 901.0f << 1.0f;
    QTest::newRow("linspace") << "linspace" << 999.0f << 0.0f;
  }

  void euler_karras_schedule() {
    QFETCH(QString, spacing);
    QFETCH(float, first);
    QFETCH(float, last);
    const auto config = spacing_config("EulerDiscreteScheduler", spacing, 1000);
    auto karras = make_scheduler("euler_karras", config);
    auto plain = make_scheduler("euler", config);
    karras->set_timesteps(10);
    plain->set_timesteps(10);
    const auto& t = karras->model_timesteps();
    QVERIFY2(std::abs(t.front() - first) < 1e-3f, qPrintable(QString::number(t.front())));
    QVERIFY2(std::abs(t.back() - last) < 1e-3f, qPrintable(QString::number(t.back())));
    for (std::size_t i = 1; i < t.size(); ++i) QVERIFY(t[i] < t[i - 1]);
    QVERIFY(t[5] < plain->model_timesteps()[5]);  // Karras spends more steps at low noise
    // (pow(pow(sigma, 1/7), 7): the same sigma within rounding; QCOMPARE of floats is fuzzy.)
    QCOMPARE(karras->init_noise_sigma(), plain->init_noise_sigma());
    const std::vector<float> x = {1.0f, -2.0f};
    for (std::size_t k = 0; k < x.size(); ++k)
      QCOMPARE(karras->scale_model_input(x, 0)[k], plain->scale_model_input(x, 0)[k]);
    for (std::size_t i = 0; i < t.size(); ++i)
      QCOMPARE(karras->timesteps()[i], static_cast<std::int64_t>(t[i]));
  }

  // Euler ancestral adds fresh noise at every step, drawn from the generator it was handed, one draw of
  // the latent's size per step in order: with zero latents and zero model output a step is that draw
  // times sigma_up, so two steps give torch's two successive draws from one generator (seeded goldens).
  void ancestral_noise_continues_the_generator() {
    const auto goldens = SafetensorsFile::open(test::reference_dir() / "seeded" / "golden.safetensors");
    const auto first = goldens.tensor("randn.seed5.two_draws.first").to_f32();
    const auto second = goldens.tensor("randn.seed5.two_draws.second").to_f32();
    auto scheduler = make_scheduler("euler_a", model_config("tiny-sd15"));
    QVERIFY(scheduler->ancestral());
    scheduler->set_timesteps(12);
    const std::vector<float> zero(first.size(), 0.0f);
    expect_error([&] { scheduler->step(zero, 0, zero); }, ErrorCode::invalid_argument, "noise generator");
    scheduler->set_noise_generator(TorchGenerator(5));
    for (const auto* draw : {&first, &second}) {
      const int i = draw == &first ? 0 : 1;
      const auto out = scheduler->step(zero, i, zero);
      double dot = 0, norm = 0;
      for (std::size_t k = 0; k < out.size(); ++k) dot += double(out[k]) * (*draw)[k], norm += double((*draw)[k]) * (*draw)[k];
      const double sigma_up = dot / norm;
      QVERIFY2(sigma_up > 0.1, qPrintable(QString::number(sigma_up)));
      std::vector<float> scaled(draw->size());
      for (std::size_t k = 0; k < scaled.size(); ++k) scaled[k] = static_cast<float>(sigma_up * (*draw)[k]);
      const double error = test::relative_l2(out, scaled);
      QVERIFY2(error < 1e-6, qPrintable(QString("step %1: relative L2 %2").arg(i).arg(error)));
    }
    // The other samplers never draw.
    for (const char* name : {"ddim", "dpmpp2m", "euler", "dpmpp2m_karras", "euler_karras"})
      QVERIFY(!make_scheduler(name, model_config("tiny-sd15"))->ancestral());
  }

  void unknown_name_lists_the_valid_ones() {
    expect_error([] { make_scheduler("pndm", SchedulerConfig{}); }, ErrorCode::invalid_argument,
                 "ddim, dpmpp2m, euler");
  }

  void step_count_out_of_range_data() {
    QTest::addColumn<QString>("name");
    QTest::addColumn<int>("steps");
    for (const char* name : {"ddim", "dpmpp2m", "euler", "euler_a", "dpmpp2m_karras", "euler_karras"}) {
      QTest::addRow("%s zero", name) << QString(name) << 0;
      QTest::addRow("%s negative", name) << QString(name) << -3;
      QTest::addRow("%s above training", name) << QString(name) << 1001;
    }
  }

  void step_count_out_of_range() {
    QFETCH(QString, name);
    QFETCH(int, steps);
    auto scheduler = make_scheduler(name.toStdString(), model_config("tiny-sd15"));
    expect_error([&] { scheduler->set_timesteps(steps); }, ErrorCode::invalid_argument, "between 1 and 1000");
  }

  void offset_beyond_the_training_range() {
    // leading with steps_offset 1 at 1000 steps would start at timestep 1000, one past the last.
    auto scheduler = make_scheduler("ddim", model_config("tiny-sd15"));
    expect_error([&] { scheduler->set_timesteps(1000); }, ErrorCode::invalid_argument, "steps_offset");
  }

  void misuse_of_step() {
    const std::vector<float> x(8, 0.5f);
    auto unset = make_scheduler("euler", model_config("tiny-sd2"));
    expect_error([&] { unset->step(x, 0, x); }, ErrorCode::invalid_argument, "set_timesteps");

    auto dpm = make_scheduler("dpmpp2m", model_config("tiny-sd2"));
    dpm->set_timesteps(5);
    dpm->step(x, 0, x);
    expect_error([&] { dpm->step(x, 2, x); }, ErrorCode::invalid_argument, "in order");
    expect_error([&] { dpm->step(x, 5, x); }, ErrorCode::invalid_argument, "outside");
    const std::vector<float> shorter(4, 0.5f);
    expect_error([&] { dpm->step(shorter, 1, x); }, ErrorCode::invalid_argument, "model output");
  }

  // plan_step and the rule give what step() gives; after steps planned elsewhere, DPM's step() needs its
  // history back (set_history) and says so.
  void planned_steps_equal_steps() {
    std::vector<float> x(16), m(16);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i) - 0.7f, m[i] = 0.05f * static_cast<float>(i % 5);
    for (const char* name : {"ddim", "dpmpp2m", "euler", "euler_a", "euler_karras"}) {
      auto a = make_scheduler(name, model_config("tiny-sd2"));
      auto b = make_scheduler(name, model_config("tiny-sd2"));
      a->set_timesteps(6);
      b->set_timesteps(6);
      a->set_noise_generator(TorchGenerator(5));
      b->set_noise_generator(TorchGenerator(5));
      std::vector<float> xa = x, xb = x, history;
      for (int i = 0; i < 6; ++i) {
        xa = a->step(m, i, xa);
        std::vector<float> noise;
        const auto rule = b->plan_step(i, xb.size(), &noise);
        std::vector<float> next(xb.size());
        for (std::size_t k = 0; k < xb.size(); ++k) {
          float x0 = 0.0f;
          next[k] = apply_sampler_rule(rule, m[k], xb[k], rule.history ? history[k] : 0.0f, rule.noise ? noise[k] : 0.0f, x0);
          history.resize(xb.size());
          history[k] = x0;
        }
        xb = next;
        QCOMPARE(a->input_divisor(i) == 1.0f, std::string(name).rfind("euler", 0) != 0);
      }
      QVERIFY2(xa == xb, name);
    }
    auto dpm = make_scheduler("dpmpp2m", model_config("tiny-sd2"));
    dpm->set_timesteps(5);
    dpm->step(m, 0, x);
    QCOMPARE(dpm->history().size(), x.size());
    dpm->plan_step(1, x.size());
    expect_error([&] { dpm->step(m, 2, x); }, ErrorCode::invalid_argument, "set_history");
    dpm->set_history(x);
    dpm->step(m, 2, x);
  }

  void unsupported_options() {
    nlohmann::json exponential = {{"_class_name", "EulerDiscreteScheduler"}, {"use_exponential_sigmas", true}};
    expect_error([&] { make_scheduler("euler_karras", SchedulerConfig::from_json(exponential, "test")); },
                 ErrorCode::unsupported, "use_exponential_sigmas");
    nlohmann::json sigma_max = {{"_class_name", "EulerDiscreteScheduler"}, {"sigma_max", 80.0}};
    expect_error([&] { make_scheduler("euler_karras", SchedulerConfig::from_json(sigma_max, "test")); },
                 ErrorCode::unsupported, "sigma_max");
    // A config's own use_karras_sigmas does not override the name asked for (it picks the default
    // sampler: test_pipeline).
    nlohmann::json karras = {
        {"_class_name", "EulerDiscreteScheduler"}, {"timestep_spacing", "linspace"}, {"use_karras_sigmas", true}};
    auto plain = make_scheduler("euler", SchedulerConfig::from_json(karras, "test"));
    plain->set_timesteps(3);
    QCOMPARE(plain->model_timesteps(), (std::vector<float>{999.0f, 499.5f, 0.0f}));
    nlohmann::json cosine = {{"_class_name", "DDIMScheduler"}, {"beta_schedule", "squaredcos_cap_v2"}};
    expect_error([&] { make_scheduler("ddim", SchedulerConfig::from_json(cosine, "test")); },
                 ErrorCode::unsupported, "squaredcos_cap_v2");
  }
};

QTEST_GUILESS_MAIN(TestSchedulers)
#include "test_schedulers.moc"
