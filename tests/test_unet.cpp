// The U-Net on the CPU backend against diffusers' goldens (tiny SD2 and SD1.5, a square CFG batch and
// a non-square latent); single-file weights give the same output as the diffusers folder; the
// timestep embedding at fractional timesteps; and the errors a caller or a broken file can cause.
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "edit/sparse_step.h"
#include "io/model_loader.h"
#include "io/safetensors.h"
#include "models/unet.h"
#include "test_support.h"

#include <QtTest>

#include <cmath>
#include <string>
#include <vector>

using namespace fisedit;

namespace {

using test::relative_l2;

template <typename F>
void expect_error(F&& f, ErrorCode code, const std::string& fragment) {
  try {
    f();
    QFAIL("no error thrown");
  } catch (const Error& e) {
    QVERIFY2(e.code() == code, (std::string("wrong code: ") + error_code_name(e.code()) + ": " + e.what()).c_str());
    QVERIFY2(std::string(e.what()).find(fragment) != std::string::npos, e.what());
  }
}

// A reference model's weights and its diffusers goldens.
struct Reference {
  LoadedModel loaded;
  SafetensorsFile goldens;
};
Reference reference(const std::string& model) {
  const auto dir = test::reference_dir() / model;
  return {load_model(dir / "model"), SafetensorsFile::open(dir / "golden.safetensors")};
}

}  // namespace

class TestUNet : public QObject {
  Q_OBJECT

private slots:
  void golden_data() {
    QTest::addColumn<QString>("model");
    QTest::addColumn<QString>("prefix");
    for (const char* model : {"tiny-sd2", "tiny-sd15"})
      for (const char* prefix : {"unet", "unet_nonsquare"})
        QTest::addRow("%s/%s", model, prefix) << model << prefix;
  }
  void golden() {
    QFETCH(QString, model);
    QFETCH(QString, prefix);
    const auto [loaded, goldens] = reference(model.toStdString());
    const auto key = prefix.toStdString() + ".";
    const Tensor want = goldens.tensor(key + "out");

    CpuBackend backend;
    UNet unet(backend, loaded.unet, loaded.unet_weights);
    const auto timesteps = goldens.tensor(key + "timesteps").to_f32();
    const Tensor got = unet.forward(goldens.tensor(key + "sample"), timesteps, goldens.tensor(key + "context"));

    QCOMPARE(got.shape(), want.shape());
    const double error = relative_l2(got.to_f32(), want.to_f32());
    QVERIFY2(error <= 1e-4, ("relative L2 error " + std::to_string(error)).c_str());
  }

  // Each half of a CFG batch, run alone with its own timestep, gives that half of the batched output
  // (up to GEMM blocking, which depends on the batch size); one timestep serves the whole batch.
  void batch_rows_are_independent() {
    const auto [loaded, goldens] = reference("tiny-sd2");
    CpuBackend backend;
    UNet unet(backend, loaded.unet, loaded.unet_weights);
    const Tensor sample = goldens.tensor("unet.sample"), context = goldens.tensor("unet.context");
    const auto timesteps = goldens.tensor("unet.timesteps").to_f32();
    const auto batched = unet.forward(sample, timesteps, context).to_f32();
    const auto half = batched.size() / 2;
    for (std::size_t row = 0; row < 2; ++row) {
      const auto r = static_cast<std::int64_t>(row);
      const auto alone =
          unet.forward(sample.slice_rows(r, r + 1), std::span(timesteps).subspan(row, 1), context.slice_rows(r, r + 1))
              .to_f32();
      const std::vector<float> part(batched.begin() + static_cast<std::ptrdiff_t>(row * half),
                                    batched.begin() + static_cast<std::ptrdiff_t>((row + 1) * half));
      QVERIFY(relative_l2(alone, part) <= 1e-5);
    }
    QVERIFY(unet.forward(sample, std::vector<float>{981.0f}, context).to_f32() ==
            unet.forward(sample, std::vector<float>{981.0f, 981.0f}, context).to_f32());
  }

  // The cross-attentions keep the projected keys and values of the context tensor they last saw
  // (every step of a generation passes the same one): reusing them gives the same output, and another
  // context, even of the same shape, is projected anew, never answered from the memo.
  void context_projections_are_reused_for_that_context_only() {
    const auto [loaded, goldens] = reference("tiny-sd2");
    CpuBackend backend;
    UNet unet(backend, loaded.unet, loaded.unet_weights);
    const auto sample = backend.nchw_to_nhwc(backend.upload(goldens.tensor("unet.sample")));
    const auto timesteps = goldens.tensor("unet.timesteps").to_f32();
    const auto context = goldens.tensor("unet.context");
    auto other_values = context.to_f32();
    for (auto& v : other_values) v = -0.5f * v + 0.25f;
    const auto first = backend.upload(context), other = backend.upload(Tensor::from_f32(context.shape(), other_values));
    const auto once = backend.download(unet.forward(sample, timesteps, first)).to_f32();
    QVERIFY(backend.download(unet.forward(sample, timesteps, first)).to_f32() == once);
    const auto with_other = backend.download(unet.forward(sample, timesteps, other)).to_f32();
    QVERIFY(relative_l2(with_other, once) > 1e-3);
    UNet fresh(backend, loaded.unet, loaded.unet_weights);
    QVERIFY(backend.download(fresh.forward(sample, timesteps, other)).to_f32() == with_other);
    QVERIFY(backend.download(unet.forward(sample, timesteps, backend.upload(context))).to_f32() == once);
  }

  // What a step records for later edits: every 3x3 convolution's output (conv_in, conv_out, the
  // resamplers, each resnet's conv1), each transformer model's output and its blocks' self-attention
  // keys and values, and a resnet's output only where no transformer model of its level follows it
  // (one that does reads it at the active positions alone, so an edit never reads it elsewhere).
  void a_step_records_what_an_edit_reads_elsewhere() {
    const auto [loaded, goldens] = reference("tiny-sd2");
    const auto& c = loaded.unet;
    CpuBackend backend;
    UNet unet(backend, c, loaded.unet_weights);
    LayerRecord record;
    SparseStep step(record);
    const auto sample = backend.nchw_to_nhwc(backend.upload(goldens.tensor("unet.sample")));
    const auto plain = backend.download(unet.forward(sample, goldens.tensor("unet.timesteps").to_f32(),
                                                     backend.upload(goldens.tensor("unet.context"))))
                           .to_f32();
    const auto recorded = backend.download(unet.forward(sample, goldens.tensor("unet.timesteps").to_f32(),
                                                        backend.upload(goldens.tensor("unet.context")), &step))
                              .to_f32();
    QVERIFY(recorded == plain);
    const std::size_t transformer = 1 + 2 * static_cast<std::size_t>(c.transformer_layers_per_block);
    const auto levels = c.down_block_types.size();
    const auto lpb = static_cast<std::size_t>(c.layers_per_block);
    std::size_t expected = 2;  // conv_in, conv_out
    std::size_t cross_blocks = 0;
    for (std::size_t level = 0; level < levels; ++level) {
      const bool down_cross = c.down_block_types[level] == "CrossAttnDownBlock2D";
      const bool up_cross = c.up_block_types[level] == "CrossAttnUpBlock2D";
      cross_blocks += down_cross + up_cross;
      expected += lpb * (down_cross ? 1 + transformer : 2) + (lpb + 1) * (up_cross ? 1 + transformer : 2);
      if (level + 1 < levels) expected += 2;  // a downsampler and an upsampler
    }
    QVERIFY(cross_blocks > 0);                   // the model exercises the rule
    expected += 1 + transformer + 2;             // the mid block: resnet (conv1), transformer, resnet
    QCOMPARE(record.outputs.size(), expected);
    for (const auto& entry : record.outputs) QVERIFY(!entry.empty());
  }

  // Each resnet's time embedding depends on the timestep alone: the U-Net keeps them by timestep (an
  // edit's steps find its generation's), and a step given them ready-made (forward_projected, as a
  // recorded sparse step takes them) equals one that computes them from the sinusoids.
  void time_projections_are_kept_by_timestep() {
    const auto [loaded, goldens] = reference("tiny-sd2");
    CpuBackend backend;
    UNet unet(backend, loaded.unet, loaded.unet_weights);
    const auto sample = backend.nchw_to_nhwc(backend.upload(goldens.tensor("unet.sample")));
    const auto context = backend.upload(goldens.tensor("unet.context"));
    const std::vector<float> t981{981.0f}, t961{961.0f};
    const auto kept = unet.time_projections(t981, 2);
    QCOMPARE(kept.rank(), 1);
    // Its parts: every resnet's out channels, each [2, out].
    std::int64_t channels = 0;
    for (const auto& c : loaded.unet.block_out_channels) channels += c;
    QVERIFY(kept.numel() > 2 * channels);
    QVERIFY(unet.time_projections(t981, 2).data() == kept.data());               // found, not recomputed
    QVERIFY(unet.time_projections(std::vector<float>{981.0f, 981.0f}, 2).data() == kept.data());
    QVERIFY(unet.time_projections(t961, 2).data() != kept.data());               // another timestep
    QVERIFY(unet.time_projections(t981, 1).data() != kept.data());               // another batch
    const auto computed = unet.time_projections(backend.upload(unet.time_sinusoids(t981, 2)));
    QVERIFY(computed.data() != kept.data());
    QVERIFY(backend.download(computed).to_f32() == backend.download(kept).to_f32());
    QVERIFY(backend.download(unet.time_projections(t961, 2)).to_f32() != backend.download(kept).to_f32());

    const auto by_timestep = backend.download(unet.forward(sample, t981, context)).to_f32();
    const auto embedded =
        backend.download(unet.forward_embedded(sample, backend.upload(unet.time_sinusoids(t981, 2)), context)).to_f32();
    const auto projected = backend.download(unet.forward_projected(sample, kept, context)).to_f32();
    QVERIFY(embedded == by_timestep);
    QVERIFY(projected == by_timestep);
    QVERIFY(backend.download(unet.forward(sample, t961, context)).to_f32() != by_timestep);
    expect_error([&] { unet.forward_projected(sample, unet.time_projections(t981, 1), context); },
                 ErrorCode::invalid_argument, "time projections");
  }

  void single_file_matches_folder_data() {
    QTest::addColumn<QString>("model");
    QTest::newRow("tiny-sd2") << "tiny-sd2";
    QTest::newRow("tiny-sd15") << "tiny-sd15";
  }
  void single_file_matches_folder() {
    QFETCH(QString, model);
    const auto dir = test::reference_dir() / model.toStdString();
    const auto folder = load_model(dir / "model");
    const auto single = load_model(dir / "single-file.safetensors", {.config_dir = dir / "model"});
    const auto goldens = SafetensorsFile::open(dir / "golden.safetensors");
    const Tensor sample = goldens.tensor("unet_nonsquare.sample"), context = goldens.tensor("unet_nonsquare.context");
    const std::vector<float> timesteps{499.5f};

    CpuBackend backend;
    UNet from_folder(backend, folder.unet, folder.unet_weights);
    UNet from_single(backend, single.unet, single.unet_weights);
    QVERIFY(from_single.forward(sample, timesteps, context).to_f32() ==
            from_folder.forward(sample, timesteps, context).to_f32());
  }

  // Against the formula in double: a fractional timestep, the cos half first (flip_sin_to_cos).
  void timestep_embedding_fractional() {
    const std::vector<float> timesteps{499.5f, 0.25f};
    const int dim = 32, half = dim / 2;
    const auto emb = timestep_embedding(timesteps, dim, true, 0);
    QCOMPARE(emb.size(), timesteps.size() * dim);
    for (std::size_t b = 0; b < timesteps.size(); ++b)
      for (int i = 0; i < half; ++i) {
        const double arg = timesteps[b] * std::exp(-std::log(10000.0) * i / half);
        QVERIFY(std::abs(emb[b * dim + static_cast<std::size_t>(i)] - std::cos(arg)) < 1e-4);
        QVERIFY(std::abs(emb[b * dim + static_cast<std::size_t>(half + i)] - std::sin(arg)) < 1e-4);
      }
    // freq_shift 1 divides by half - 1, so the slowest frequency is exactly 1e-4.
    const auto shifted = timestep_embedding(std::vector<float>{1000.0f}, dim, false, 1);
    QVERIFY(std::abs(shifted[half - 1] - std::sin(0.1)) < 1e-6);
  }

  void missing_or_misshapen_weight() {
    const auto loaded = load_model(test::reference_dir() / "tiny-sd15" / "model");
    CpuBackend backend;

    const std::string missing = "up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_v.weight";
    auto weights = loaded.unet_weights;
    QVERIFY(weights.erase(missing) == 1);
    expect_error([&] { UNet(backend, loaded.unet, weights); }, ErrorCode::not_found, "'" + missing + "'");

    const std::string shortcut = "up_blocks.0.resnets.2.conv_shortcut.weight";
    weights = loaded.unet_weights;
    weights.at(shortcut) = Tensor::zeros(DType::f16, {64, 96, 3, 3});
    expect_error([&] { UNet(backend, loaded.unet, weights); }, ErrorCode::invalid_argument, "'" + shortcut + "'");
  }

  // Latent sizes that do not halve evenly (images that are multiples of 8 but not of 64): the down path
  // rounds up, and each upsampler resizes to its skip connection, as diffusers' forward_upsample_size.
  void odd_latent_sizes() {
    const auto loaded = load_model(test::reference_dir() / "tiny-sd2" / "model");
    CpuBackend backend;
    UNet unet(backend, loaded.unet, loaded.unet_weights);
    const std::vector<float> t{500.0f};
    std::vector<float> sample(1 * 4 * 17 * 13);
    for (std::size_t i = 0; i < sample.size(); ++i) sample[i] = std::sin(0.37f * float(i));
    const auto out = unet.forward(Tensor::from_f32({1, 4, 17, 13}, sample), t, Tensor::zeros(DType::f32, {1, 77, 32}));
    QCOMPARE(out.shape(), (Shape{1, 4, 17, 13}));
    for (float v : out.to_f32()) QVERIFY(std::isfinite(v));
  }

  void bad_inputs() {
    const auto loaded = load_model(test::reference_dir() / "tiny-sd15" / "model");
    CpuBackend backend;
    UNet unet(backend, loaded.unet, loaded.unet_weights);
    const auto context = Tensor::zeros(DType::f32, {1, 77, 32});
    const std::vector<float> t{10.0f};
    expect_error([&] { unet.forward(Tensor::zeros(DType::f32, {1, 4, 0, 16}), t, context); },
                 ErrorCode::invalid_argument, "latent size");
    expect_error([&] { unet.forward(Tensor::zeros(DType::f32, {1, 3, 16, 16}), t, context); },
                 ErrorCode::invalid_argument, "sample");
    expect_error([&] { unet.forward(Tensor::zeros(DType::f32, {1, 4, 16, 16}), std::vector<float>{1, 2}, context); },
                 ErrorCode::invalid_argument, "2 timesteps for a batch of 1");
    expect_error([&] { unet.forward(Tensor::zeros(DType::f32, {1, 4, 16, 16}), t, Tensor::zeros(DType::f32, {1, 77, 16})); },
                 ErrorCode::invalid_argument, "context");

    auto config = loaded.unet;
    config.mid_block_type = "UNetMidBlock2DSimpleCrossAttn";
    expect_error([&] { UNet(backend, config, loaded.unet_weights); }, ErrorCode::unsupported, "UNetMidBlock2DSimpleCrossAttn");
  }
};

QTEST_GUILESS_MAIN(TestUNet)
#include "test_unet.moc"
