// The built-in demo model: written, loaded like any diffusers folder, tokenizing byte by byte, and
// generating and editing on the CPU.
#include "backend/cpu/cpu_backend.h"
#include "models/demo_model.h"
#include "pipeline/generation.h"
#include "test_support.h"
#include "text/clip_tokenizer.h"

#include <QtTest>

#include <cmath>

using namespace fisedit;

class TestDemoModel : public QObject {
  Q_OBJECT

private slots:
  void write_load_generate_edit() {
    test::TempDir dir;
    write_demo_model(dir / "demo");
    const auto model = std::make_shared<LoadedModel>(load_model(dir / "demo"));
    QCOMPARE(model->family, ModelFamily::sd1);
    QCOMPARE(model->unet.sample_size * 8, 256);

    // One token per byte, the last of a word marked </w>; ids 0-255 bytes, 256-511 word ends.
    const auto tokenizer = ClipTokenizer::from_folder(*model->tokenizer_dir);
    const auto ids = tokenizer.encode_unpadded("a cat");
    QCOMPARE(ids, (std::vector<std::int64_t>{tokenizer.bos_id(), 256 + 'a', 'c', 'a', 256 + 't', tokenizer.eos_id()}));
    QCOMPARE(tokenizer.encode("naïve").size(), std::size_t{77});

    CpuBackend backend;
    StableDiffusion sd(model, backend);
    const auto base = sd.generate_cached({"a cat", "", 1, 4, 7.5f, "", 64, 64, std::nullopt});
    for (float v : base.result.latents.to_f32()) QVERIFY(std::isfinite(v));
    EditRequest e{.prompt = "a cat with a hat"};
    e.detect_steps = 1;
    const auto edit = sd.edit(base, e);
    QCOMPARE(edit.generation.result.image.width, 64);
  }

  void rewriting_is_deterministic() {
    test::TempDir dir;
    write_demo_model(dir / "a");
    write_demo_model(dir / "b");
    const auto a = load_model(dir / "a"), b = load_model(dir / "b");
    const auto& wa = a.unet_weights.at("conv_in.weight");
    const auto& wb = b.unet_weights.at("conv_in.weight");
    QVERIFY(std::equal(wa.bytes().begin(), wa.bytes().end(), wb.bytes().begin()));
  }
};

QTEST_GUILESS_MAIN(TestDemoModel)
#include "test_demo_model.moc"
