// GPU: the activation cache in pinned host memory (edit/cache_store.h) on the CUDA backend: copies
// on the copy stream ordered against the computation by events, pinned memory given back when the
// cache goes, and edits of a spilled generation, prefetched a step ahead, bit for bit those of a
// resident one.
#include "gpu_test_main.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_memory.h"
#include "core/error.h"
#include "core/half.h"
#include "pipeline/generation.h"
#include "edit/cache_store.h"
#include "test_support.h"

#include <QtTest>

#include <cuda_runtime.h>

#include <cstdio>
#include <random>

using namespace fisedit;

namespace {

using test::half_random;

bool pinned(const DeviceTensor& t) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, t.data()) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeHost;
}

int host_tensors(const CachedGeneration& g) {
  int n = 0;
  for (const auto& s : g.steps) {
    for (const auto& t : s.outputs) n += t.host_resident();
    for (const auto& st : s.norm_stats) n += st.mean.host_resident() + st.var.host_resident();
  }
  return n;
}

}  // namespace

class TestCudaCache : public QObject {
  Q_OBJECT

  std::unique_ptr<CudaBackend> gpu_ = std::make_unique<CudaBackend>();
  std::shared_ptr<const LoadedModel> sd2_ =
      std::make_shared<LoadedModel>(load_model(test::reference_dir() / "tiny-sd2" / "model"));

  static GenerationRequest request() {
    return GenerationRequest{"a photo of a cat", "", 3, 8, 7.5f, "dpmpp2m", 192, 128, std::nullopt};
  }

private slots:
  // Copies read what queued ops wrote and write only after queued ops read: the copy stream joins the
  // compute stream's order by events, with no host synchronisation in between.
  void copies_follow_the_computation() {
    const std::int64_t n = 1 << 20;  // large enough that a copy racing the kernels would show
    const auto a = half_random(n, 1), b = half_random(n, 2);
    const auto x = gpu_->upload(Tensor::from_f32({n}, a));
    const auto doubled = gpu_->scale(x, 2.0f);  // queued
    const auto host = gpu_->allocate_host(DType::f16, {n});
    QVERIFY(host.host_resident());
    QVERIFY(pinned(host));
    const Backend::TensorCopy out{doubled, host};
    const auto out_fence = gpu_->copy_async(std::span(&out, 1));
    // b in pinned memory (upload waits for the device, so before the ops under test are queued).
    const auto staged_b = gpu_->upload(Tensor::from_f32({n}, b));
    const auto b_host = gpu_->allocate_host(DType::f16, {n});
    const Backend::TensorCopy b_out{staged_b, b_host};
    gpu_->wait(gpu_->copy_async(std::span(&b_out, 1)));
    // Back into x while queued ops still read x's old values: they must see them.
    auto x_read = gpu_->scale(x, 1.0f);
    for (int i = 0; i < 20; ++i) x_read = gpu_->add(x_read, gpu_->scale(x, 0.0f));  // a queue for the copy to race
    const Backend::TensorCopy back{b_host, x};
    gpu_->wait(gpu_->copy_async(std::span(&back, 1)));
    gpu_->wait(out_fence);
    std::vector<float> twice(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) twice[i] = 2.0f * a[i];
    QCOMPARE(gpu_->download(host).to_f32(), twice);
    QCOMPARE(gpu_->download(x_read).to_f32(), a);
    QCOMPARE(gpu_->download(gpu_->scale(x, 1.0f)).to_f32(), b);
    gpu_->synchronize_copies();
  }

  // Spilled records hold pinned memory from the pinned pool; dropping them gives it back, and the
  // device memory of the spilled tensors is freed once their copy is done.
  void pinned_memory_is_given_back() {
    StableDiffusion sd(sd2_, *gpu_);
    sd.generate(request());  // the workspaces convolutions and GEMMs keep are allocated now, not below
    gpu_->synchronize_copies();
    gpu_->synchronize();
    const auto host_before = gpu_->host_bytes_in_use().value();
    const auto device_before = gpu_->device_memory().value().in_use;
    {
      sd.set_cache_device_budget(0);
      const auto spilled = sd.generate_cached(request());
      gpu_->synchronize_copies();
      gpu_->synchronize();
      QVERIFY(spilled.cache_bytes_host() > 0);
      QCOMPARE(spilled.cache_bytes_device(), std::size_t{0});
      QVERIFY(pinned(spilled.steps.front().outputs.front()));
      QVERIFY(gpu_->host_bytes_in_use().value() >= host_before + spilled.cache_bytes_host());
      // Nothing of the cache stays on the device: the pool holds what it held before.
      QVERIFY2(gpu_->device_memory().value().in_use < device_before + spilled.cache_bytes_host() / 4,
               qPrintable(QString("%1 -> %2").arg(device_before).arg(gpu_->device_memory().value().in_use)));
    }
    QCOMPARE(gpu_->host_bytes_in_use().value(), host_before);
    // Released, the cache keeps only the free parts of segments that still hold a live buffer.
    gpu_->pinned_pool().release_cached();
    QCOMPARE(gpu_->pinned_pool().bytes_reserved(), gpu_->pinned_pool().bytes_in_use() + gpu_->pinned_pool().bytes_cached());
    if (gpu_->pinned_pool().bytes_in_use() == 0) QCOMPARE(gpu_->pinned_pool().bytes_reserved(), std::size_t{0});
  }

  void spilled_edit_equals_the_resident_edit_data() {
    QTest::addColumn<int>("budget_steps");       // device budget of the base, in steps
    QTest::addColumn<int>("edit_budget_steps");  // of the edits; -1: none
    QTest::addColumn<int>("depth");              // staging buffers
    QTest::addColumn<bool>("control");           // attention control: spilled probabilities read
    QTest::newRow("all spilled") << 0 << 0 << 2 << false;
    QTest::newRow("half spilled") << 4 << 4 << 2 << false;
    QTest::newRow("base spilled, edits resident") << 0 << -1 << 2 << false;
    QTest::newRow("base spilled, edits resident, 4 buffers") << 0 << -1 << 4 << false;
    QTest::newRow("all spilled, attention control") << 0 << 0 << 2 << true;
  }

  // The prefetch path on the GPU: the edit of a spilled generation stages every sparse step from
  // pinned memory on the copy stream, and its latents, image and chained edit equal the resident
  // edit's bit for bit.
  void spilled_edit_equals_the_resident_edit() {
    QFETCH(int, budget_steps);
    QFETCH(int, edit_budget_steps);
    QFETCH(int, depth);
    QFETCH(bool, control);
    StableDiffusion sd(sd2_, *gpu_);
    sd.set_cache_prefetch_depth(depth);
    EditRequest e{.prompt = "a photo of a cat wearing a hat"};
    e.detect_steps = 2;
    e.attention_control = control;
    EditRequest again = e;
    again.prompt = "a photo of a cat wearing a red hat";
    const auto base = sd.generate_cached(request());
    const auto want = sd.edit(base, e);
    const auto want_again = sd.edit(want.generation, again);
    QCOMPARE(want.stats.prefetched_bytes, std::size_t{0});

    const std::size_t step_bytes = base.cache_bytes() / base.steps.size();
    sd.set_cache_device_budget(static_cast<std::size_t>(budget_steps) * step_bytes);
    const auto spilled = sd.generate_cached(request());
    QCOMPARE(spilled.latents, base.latents);
    QVERIFY(host_tensors(spilled) > 0);
    QVERIFY(pinned(spilled.steps.front().outputs.front()));
    sd.set_cache_device_budget(edit_budget_steps < 0 ? std::nullopt
                                                     : std::optional<std::size_t>(static_cast<std::size_t>(edit_budget_steps) * step_bytes));
    const auto copies = gpu_->copy_counters();
    const auto got = sd.edit(spilled, e);
    QVERIFY(gpu_->copy_counters().calls > copies.calls);
    QVERIFY(got.stats.prefetched_bytes > 0);
    qInfo("edit fraction %.3f, %zu bytes prefetched, cache %zu device + %zu host", got.stats.edit_fraction,
          got.stats.prefetched_bytes, spilled.cache_bytes_device(), spilled.cache_bytes_host());
    QCOMPARE(got.stats.attention_control_steps, want.stats.attention_control_steps);
    QCOMPARE(got.mask.values, want.mask.values);
    QCOMPARE(got.generation.latents, want.generation.latents);
    QCOMPARE(got.generation.result.image.pixels, want.generation.result.image.pixels);
    const auto got_again = sd.edit(got.generation, again);
    QCOMPARE(got_again.generation.latents, want_again.generation.latents);
    QCOMPARE(got_again.generation.result.image.pixels, want_again.generation.result.image.pixels);
  }
};

FISEDIT_GPU_TEST_MAIN(TestCudaCache)

#include "test_cuda_cache.moc"
