// GPU: the CUDA backend's matrix ops (linear, conv2d, attention) against the float32 CPU backend on
// random inputs of odd sizes and batch 2: relative L2 error <= 1e-2 (fp16 storage). Inputs are rounded
// to fp16 before both backends see them, so the error measured is the ops', not the upload's.
// Attention's split-key route is also driven through kernels::attention, to force it on and off.
#include "gpu_test_main.h"
#include "attention.cuh"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/error.h"
#include "core/half.h"

#include "test_support.h"

#include <QtTest>

#include <cuda_runtime.h>

#include <cmath>
#include <tuple>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>

using namespace fisedit;
using Values = std::vector<float>;

namespace {

constexpr double kTolerance = 1e-2;

using test::half_random;

using test::relative_l2;

// Attention inputs of batch 2 (q of amplitude 3, so the softmax is peaked rather than nearly uniform)
// with SD's scale and the upcast, on the host.
struct AttentionCase {
  Tensor q, k, v;
  AttentionParams params;
};
AttentionCase attention_case(int heads, int head_dim, int lq, int lk, unsigned seed) {
  constexpr int batch = 2;
  const std::int64_t c = std::int64_t{heads} * head_dim;
  AttentionCase a{Tensor::from_f32({batch, lq, c}, half_random(batch * lq * c, seed, 3.0f)),
                  Tensor::from_f32({batch, lk, c}, half_random(batch * lk * c, seed + 1, 1.0f)),
                  Tensor::from_f32({batch, lk, c}, half_random(batch * lk * c, seed + 2, 1.0f)),
                  {}};
  a.params.heads = heads;
  a.params.scale = 1.0f / std::sqrt(float(head_dim));
  a.params.upcast = true;
  return a;
}

// Gives a test's CudaBackend the environment's attention route back when it ends.
struct AttentionRouteBack {
  CudaBackend& backend;
  ~AttentionRouteBack() { backend.set_attention_route(std::nullopt); }
};

}  // namespace

Q_DECLARE_METATYPE(Activation)

class TestCudaGemm : public QObject {
  Q_OBJECT
  CpuBackend cpu;
  std::unique_ptr<CudaBackend> gpu;

  // Runs `op` on both backends with the same host inputs; compares shapes and values.
  template <class Op>
  void compare(const std::vector<std::pair<Shape, Values>>& inputs, Op op) {
    std::vector<DeviceTensor> on_cpu, on_gpu;
    for (const auto& [shape, values] : inputs) {
      const auto host = Tensor::from_f32(shape, values);
      on_cpu.push_back(cpu.upload(host));
      on_gpu.push_back(gpu->upload(host));
    }
    const Tensor want = cpu.download(op(static_cast<Backend&>(cpu), on_cpu));
    const Tensor got = gpu->download(op(static_cast<Backend&>(*gpu), on_gpu));
    QCOMPARE(QString::fromStdString(shape_to_string(got.shape())), QString::fromStdString(shape_to_string(want.shape())));
    const auto g = got.to_f32();
    for (float x : g) QVERIFY2(std::isfinite(x), "non-finite value in the CUDA result");
    const double err = relative_l2(g, want.to_f32());
    QVERIFY2(err <= kTolerance, qPrintable(QString("relative L2 error %1").arg(err)));
  }

private slots:
  void initTestCase() {
    try {
      gpu = std::make_unique<CudaBackend>();
    } catch (const Error& e) {
      QFAIL(e.what());
    }
  }

  void linear_data() {
    QTest::addColumn<Activation>("act");
    QTest::addColumn<bool>("with_bias");
    QTest::addColumn<int>("rows");  // per batch item; the batch is 2
    QTest::addColumn<int>("k");
    QTest::addColumn<int>("n");
    QTest::newRow("none 77x768->320") << Activation::none << true << 77 << 768 << 320;
    QTest::newRow("no bias 77x320->1280") << Activation::none << false << 77 << 320 << 1280;
    QTest::newRow("odd K and N 13x77->77") << Activation::none << true << 13 << 77 << 77;
    QTest::newRow("silu 1x320->1280 (time embedding)") << Activation::silu << true << 1 << 320 << 1280;
    QTest::newRow("gelu 77x1280->320") << Activation::gelu << true << 77 << 1280 << 320;
    QTest::newRow("gelu no bias odd 5x77->9") << Activation::gelu << false << 5 << 77 << 9;
    QTest::newRow("quick_gelu 77x768->3072") << Activation::quick_gelu << true << 77 << 768 << 3072;
    QTest::newRow("large M 4103x320->640") << Activation::none << true << 4103 << 320 << 640;
  }
  void linear() {
    QFETCH(Activation, act);
    QFETCH(bool, with_bias);
    QFETCH(int, rows);
    QFETCH(int, k);
    QFETCH(int, n);
    const std::int64_t b = 2;
    std::vector<std::pair<Shape, Values>> in = {{{b, rows, k}, half_random(b * rows * k, 1)},
                                                {{n, k}, half_random(std::int64_t{n} * k, 2, 0.1f)}};
    if (with_bias) in.push_back({{n}, half_random(n, 3)});
    compare(in, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.linear(t[0], t[1], with_bias ? t[2] : DeviceTensor(), act);
    });
  }

  // G linears of one input in one strided-batched GEMM (an attention's Q, K and V): few rows (a
  // sparse step's), many rows, odd sizes, and a view of the input.
  void linear_group_data() {
    QTest::addColumn<int>("rows");
    QTest::addColumn<int>("k");
    QTest::addColumn<int>("n");
    QTest::newRow("sparse 37x320->320") << 37 << 320 << 320;
    QTest::newRow("dense 1152x640->640") << 1152 << 640 << 640;
    QTest::newRow("odd 13x77->77") << 13 << 77 << 77;
  }
  void linear_group() {
    QFETCH(int, rows);
    QFETCH(int, k);
    QFETCH(int, n);
    std::vector<std::pair<Shape, Values>> in = {{{2, rows, k}, half_random(2 * rows * k, 7)},
                                                {{3, n, k}, half_random(3 * std::int64_t{n} * k, 8, 0.1f)}};
    compare(in, [&](Backend& be, const std::vector<DeviceTensor>& t) { return be.linear_group(t[0], t[1]); });
    compare(in, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.linear_group(t[0].slice_rows(1, 2), t[1]);
    });
  }

  // The second half of a CFG-style batch: x starts at an odd byte offset (K = 77 halves a row).
  void linear_unaligned_view() {
    const std::int64_t k = 77, n = 40;
    std::vector<std::pair<Shape, Values>> in = {{{3, 5, k}, half_random(3 * 5 * k, 4)},
                                                {{n, k}, half_random(n * k, 5, 0.1f)},
                                                {{n}, half_random(n, 6)}};
    compare(in, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.linear(t[0].slice_rows(1, 3).reshaped({2 * 5, k}).slice_rows(1, 10), t[1], t[2], Activation::silu);
    });
  }

  // The residual connection in the GEMM's epilogue (cuBLASLt's C with beta 1), bias or not, odd N
  // (unaligned rows), and a residual that is an unaligned view.
  void linear_add_data() {
    QTest::addColumn<bool>("with_bias");
    QTest::addColumn<int>("rows");
    QTest::addColumn<int>("k");
    QTest::addColumn<int>("n");
    QTest::newRow("bias 77x320->320") << true << 77 << 320 << 320;
    QTest::newRow("no bias 4103x1280->320") << false << 4103 << 1280 << 320;
    QTest::newRow("odd 13x77->77") << true << 13 << 77 << 77;
  }
  void linear_add() {
    QFETCH(bool, with_bias);
    QFETCH(int, rows);
    QFETCH(int, k);
    QFETCH(int, n);
    const std::int64_t b = 2;
    std::vector<std::pair<Shape, Values>> in = {{{b, rows, k}, half_random(b * rows * k, 21)},
                                                {{n, k}, half_random(std::int64_t{n} * k, 22, 0.1f)},
                                                {{b, rows, n}, half_random(b * rows * n, 23, 2.0f)}};
    if (with_bias) in.push_back({{n}, half_random(n, 24)});
    compare(in, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.linear_add(t[0], t[1], with_bias ? t[3] : DeviceTensor(), t[2]);
    });
  }
  void linear_add_unaligned_residual() {
    const std::int64_t k = 40, n = 77;
    std::vector<std::pair<Shape, Values>> in = {{{5, k}, half_random(5 * k, 25)},
                                                {{n, k}, half_random(n * k, 26, 0.1f)},
                                                {{6, n}, half_random(6 * n, 27)},
                                                {{n}, half_random(n, 28)}};
    compare(in, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.linear_add(t[0], t[1], t[3], t[2].slice_rows(1, 6));
    });
  }

  // The addend in the convolution's bias pass: a residual [N, Ho, Wo, Cout] or a time embedding
  // [N, 1, 1, Cout], on cuDNN's path and on the im2col + GEMM path of few channels.
  void conv2d_add_data() {
    QTest::addColumn<int>("cin");
    QTest::addColumn<int>("cout");
    QTest::addColumn<bool>("bias");
    QTest::addColumn<bool>("broadcast");
    QTest::newRow("3x3 320->320 residual") << 320 << 320 << true << false;
    QTest::newRow("3x3 320->320 time embedding") << 320 << 320 << true << true;
    QTest::newRow("3x3 64->128 no bias, residual") << 64 << 128 << false << false;
    QTest::newRow("3x3 320->4 (im2col + GEMM) residual") << 320 << 4 << true << false;
    QTest::newRow("3x3 12->10 (odd channels) time embedding") << 12 << 10 << true << true;
  }
  void conv2d_add() {
    QFETCH(int, cin);
    QFETCH(int, cout);
    QFETCH(bool, bias);
    QFETCH(bool, broadcast);
    const std::int64_t n = 2, h = 13, w = 11;
    const auto weight = Tensor::from_f32({cout, cin, 3, 3}, half_random(std::int64_t{cout} * cin * 9, 29, 0.1f));
    const auto b = bias ? Tensor::from_f32({cout}, half_random(cout, 30)) : Tensor();
    const ConvWeight cw_cpu = cpu.prepare_conv_weight(weight, b), cw_gpu = gpu->prepare_conv_weight(weight, b);
    const Shape addend = broadcast ? Shape{n, 1, 1, cout} : Shape{n, h, w, cout};
    compare({{{n, h, w, cin}, half_random(n * h * w * cin, 31)}, {addend, half_random(shape_numel(addend), 32, 2.0f)}},
            [&](Backend& be, const std::vector<DeviceTensor>& t) {
              return be.conv2d_add(t[0], &be == &cpu ? cw_cpu : cw_gpu, Conv2dParams::same(1, 1), t[1]);
            });
  }

  void conv2d_data() {
    QTest::addColumn<int>("kernel");
    QTest::addColumn<int>("stride");
    QTest::addColumn<QList<int>>("pad");  // top, bottom, left, right
    QTest::addColumn<int>("cin");
    QTest::addColumn<int>("cout");
    QTest::addColumn<bool>("bias");
    QTest::newRow("conv_in 3x3 4->320") << 3 << 1 << QList<int>{1, 1, 1, 1} << 4 << 320 << true;
    QTest::newRow("conv_out 3x3 320->4") << 3 << 1 << QList<int>{1, 1, 1, 1} << 320 << 4 << true;
    QTest::newRow("vae conv_in 3x3 3->320") << 3 << 1 << QList<int>{1, 1, 1, 1} << 3 << 320 << true;
    QTest::newRow("3x3 320->320") << 3 << 1 << QList<int>{1, 1, 1, 1} << 320 << 320 << true;
    QTest::newRow("3x3 stride 2 320->320") << 3 << 2 << QList<int>{1, 1, 1, 1} << 320 << 320 << true;
    QTest::newRow("3x3 stride 2 pad (0,1,0,1) 320->320") << 3 << 2 << QList<int>{0, 1, 0, 1} << 320 << 320 << true;
    QTest::newRow("3x3 stride 2 pad (0,1,0,1) 3->4") << 3 << 2 << QList<int>{0, 1, 0, 1} << 3 << 4 << false;
    QTest::newRow("1x1 320->4 no bias") << 1 << 1 << QList<int>{0, 0, 0, 0} << 320 << 4 << false;
    QTest::newRow("1x1 4->320") << 1 << 1 << QList<int>{0, 0, 0, 0} << 4 << 320 << true;
    QTest::newRow("1x1 stride 2 320->320") << 1 << 2 << QList<int>{0, 0, 0, 0} << 320 << 320 << true;
  }
  void conv2d() {
    QFETCH(int, kernel);
    QFETCH(int, stride);
    QFETCH(QList<int>, pad);
    QFETCH(int, cin);
    QFETCH(int, cout);
    QFETCH(bool, bias);
    const std::int64_t n = 2, h = 13, w = 11, kk = kernel;
    const Conv2dParams p{stride, pad[0], pad[1], pad[2], pad[3]};
    const auto weight = Tensor::from_f32({cout, cin, kk, kk}, half_random(std::int64_t{cout} * cin * kk * kk, 7, 0.1f));
    const auto b = bias ? Tensor::from_f32({cout}, half_random(cout, 8)) : Tensor();
    const ConvWeight cw_cpu = cpu.prepare_conv_weight(weight, b), cw_gpu = gpu->prepare_conv_weight(weight, b);
    compare({{{n, h, w, cin}, half_random(n * h * w * cin, 9)}}, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.conv2d(t[0], &be == &cpu ? cw_cpu : cw_gpu, p);
    });
  }

  // A convolution timed at one size and then met at new sizes (an edit's decode crops) and batches (its
  // first detection step, a CFG batch's conditional item alone): those take the engine timed fastest,
  // untimed, and still compute the convolution; a new convolution (other channels) is timed again.
  void conv2d_new_sizes_of_a_timed_convolution() {
    const auto weight = Tensor::from_f32({320, 320, 3, 3}, half_random(320 * 320 * 9, 21, 0.05f));
    const auto b = Tensor::from_f32({320}, half_random(320, 22));
    const ConvWeight cw_cpu = cpu.prepare_conv_weight(weight, b), cw_gpu = gpu->prepare_conv_weight(weight, b);
    const auto conv = [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.conv2d(t[0], &be == &cpu ? cw_cpu : cw_gpu, Conv2dParams::same(1, 1));
    };
    const std::uint64_t before = gpu->conv_problems_timed();
    compare({{{1, 24, 24, 320}, half_random(24 * 24 * 320, 23)}}, conv);
    const std::uint64_t after_first = gpu->conv_problems_timed();
    QVERIFY2(after_first == before + 1 || after_first == before,  // before: this size met earlier in the run
             qPrintable(QString("%1 problems timed for one convolution").arg(after_first - before)));
    for (const auto& [n, h, w] : {std::tuple{1, 16, 40}, std::tuple{1, 32, 8}, std::tuple{1, 40, 40}, std::tuple{2, 24, 24}})
      compare({{{n, h, w, 320}, half_random(std::int64_t{n} * h * w * 320, n + h + w)}}, conv);
    QCOMPARE(gpu->conv_problems_timed(), after_first);
    const auto other = Tensor::from_f32({64, 320, 3, 3}, half_random(64 * 320 * 9, 24, 0.05f));
    const ConvWeight ow_cpu = cpu.prepare_conv_weight(other, Tensor()), ow_gpu = gpu->prepare_conv_weight(other, Tensor());
    compare({{{1, 24, 24, 320}, half_random(24 * 24 * 320, 25)}}, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.conv2d(t[0], &be == &cpu ? ow_cpu : ow_gpu, Conv2dParams::same(1, 1));
    });
    QCOMPARE(gpu->conv_problems_timed(), after_first + 1);
  }

  // A shape that meets cuBLASLt's heuristic has its other row-count ranges looked up in the background:
  // the same shape with rows in another power-of-two range then asks the heuristic nothing, and
  // computes what the CPU does.
  void gemm_ranges_made_ready() {
    const std::int64_t k = 184, n = 328;  // a shape no other test uses
    const auto weight = std::pair<Shape, Values>{{n, k}, half_random(n * k, 31, 0.1f)};
    const auto bias = std::pair<Shape, Values>{{n}, half_random(n, 32)};
    const auto run = [&](std::int64_t rows, unsigned seed) {
      compare({{{rows, k}, half_random(rows * k, seed)}, weight, bias},
              [&](Backend& be, const std::vector<DeviceTensor>& t) { return be.linear(t[0], t[1], t[2]); });
    };
    const std::uint64_t before = gpu->gemm_heuristic_queries();
    run(40, 33);
    QCOMPARE(gpu->gemm_heuristic_queries(), before + 1);
    gpu->wait_gemm_ranges_ready();
    for (const std::int64_t rows : {17, 300, 1000, 5000}) run(rows, static_cast<unsigned>(rows));
    QCOMPARE(gpu->gemm_heuristic_queries(), before + 1);
  }

  // Batch item 1 of [2, 5, 7, 3] starts 210 bytes in: not 16-byte aligned.
  void conv2d_unaligned_view() {
    const auto weight = Tensor::from_f32({16, 3, 3, 3}, half_random(16 * 3 * 9, 10, 0.3f));
    const auto b = Tensor::from_f32({16}, half_random(16, 11));
    const ConvWeight cw_cpu = cpu.prepare_conv_weight(weight, b), cw_gpu = gpu->prepare_conv_weight(weight, b);
    compare({{{2, 5, 7, 3}, half_random(2 * 5 * 7 * 3, 12)}}, [&](Backend& be, const std::vector<DeviceTensor>& t) {
      return be.conv2d(t[0].slice_rows(1, 2), &be == &cpu ? cw_cpu : cw_gpu, Conv2dParams::same(1, 1));
    });
  }

  void attention_data() {
    QTest::addColumn<int>("batch");
    QTest::addColumn<int>("heads");
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<int>("lq");
    QTest::addColumn<int>("lk");
    QTest::addColumn<bool>("causal");
    QTest::addColumn<bool>("upcast");
    QTest::newRow("d16") << 2 << 4 << 16 << 100 << 100 << false << false;
    QTest::newRow("d40 cross Lk 77") << 2 << 8 << 40 << 257 << 77 << false << false;
    QTest::newRow("d64 upcast") << 2 << 5 << 64 << 300 << 300 << false << true;
    QTest::newRow("d80 cross Lk 77") << 2 << 8 << 80 << 129 << 77 << false << false;
    QTest::newRow("d96") << 2 << 2 << 96 << 70 << 90 << false << false;
    QTest::newRow("d128") << 2 << 2 << 128 << 65 << 130 << false << false;
    QTest::newRow("d160 cross Lk 77") << 2 << 8 << 160 << 65 << 77 << false << true;
    QTest::newRow("d24 (flash padded to 32)") << 2 << 3 << 24 << 70 << 70 << false << false;
    QTest::newRow("d20 (fallback)") << 2 << 3 << 20 << 70 << 50 << false << false;
    QTest::newRow("d512 (fallback, VAE)") << 1 << 1 << 512 << 200 << 200 << false << true;
    QTest::newRow("causal L 77 d64") << 2 << 12 << 64 << 77 << 77 << true << false;
    QTest::newRow("causal L 77 d20 (fallback)") << 2 << 4 << 20 << 77 << 77 << true << false;
    QTest::newRow("causal Lq 50 < Lk 77") << 2 << 2 << 64 << 50 << 77 << true << false;
    QTest::newRow("causal Lq 150 > Lk 77") << 2 << 2 << 64 << 150 << 77 << true << false;
    QTest::newRow("long L 4096 d64 upcast") << 1 << 2 << 64 << 4096 << 4096 << false << true;
    // The U-Net's shapes (SD2 768x768: heads of 64 at 96x96, 48x48, 24x24, 12x12 latents; SD1.5
    // 512x512: 8 heads of 40, 80, 160 at 64x64 .. 8x8), with Lq cut where the CPU reference would
    // take too long (query rows are independent; the key sweep keeps its real length).
    QTest::newRow("sd2 L1 self h5 d64 Lq 300 of 9216") << 2 << 5 << 64 << 300 << 9216 << false << true;
    QTest::newRow("sd2 L1 cross h5 d64 9216x77") << 2 << 5 << 64 << 9216 << 77 << false << true;
    QTest::newRow("sd2 L2 self h10 d64 Lq 513 of 2304") << 2 << 10 << 64 << 513 << 2304 << false << true;
    QTest::newRow("sd2 L2 cross h10 d64 2304x77") << 2 << 10 << 64 << 2304 << 77 << false << true;
    QTest::newRow("sd2 L3 self h20 d64 576") << 2 << 20 << 64 << 576 << 576 << false << true;
    QTest::newRow("sd2 L3 cross h20 d64 576x77") << 2 << 20 << 64 << 576 << 77 << false << true;
    QTest::newRow("sd2 mid self h20 d64 144") << 2 << 20 << 64 << 144 << 144 << false << true;
    QTest::newRow("sd15 L1 self h8 d40 Lq 300 of 4096") << 2 << 8 << 40 << 300 << 4096 << false << false;
    QTest::newRow("sd15 L1 cross h8 d40 4096x77") << 2 << 8 << 40 << 4096 << 77 << false << false;
    QTest::newRow("sd15 L2 self h8 d80 1024") << 2 << 8 << 80 << 1024 << 1024 << false << false;
    QTest::newRow("sd15 L2 cross h8 d80 1024x77") << 2 << 8 << 80 << 1024 << 77 << false << false;
    QTest::newRow("sd15 L3 self h8 d160 256") << 2 << 8 << 160 << 256 << 256 << false << false;
    QTest::newRow("sd15 L3 cross h8 d160 256x77") << 2 << 8 << 160 << 256 << 77 << false << false;
    QTest::newRow("sd15 mid self h8 d160 64") << 2 << 8 << 160 << 64 << 64 << false << false;
    // A sparse edit's self-attention: few query rows against every key, where flash2 splits the keys
    // across blocks (on an H100: from 2 chunks at Lq 700 to 36 at Lq 37). Lk 9215 ends on a partial
    // key tile. The two "sd2 ... self" rows with Lq cut above take the split route too.
    QTest::newRow("edit h5 d64 Lq 37 of 9216") << 2 << 5 << 64 << 37 << 9216 << false << true;
    QTest::newRow("edit h5 d64 Lq 200 of 9216") << 2 << 5 << 64 << 200 << 9216 << false << true;
    QTest::newRow("edit h5 d64 Lq 200 of 9215") << 2 << 5 << 64 << 200 << 9215 << false << true;
    QTest::newRow("edit h10 d64 Lq 37 of 9216") << 2 << 10 << 64 << 37 << 9216 << false << true;
    QTest::newRow("edit h10 d64 Lq 200 of 2304") << 2 << 10 << 64 << 200 << 2304 << false << true;
    QTest::newRow("edit h10 d64 Lq 700 of 2304") << 2 << 10 << 64 << 700 << 2304 << false << true;
    // Block and tile edges: 128-row blocks with 1 and 127 rows past a boundary, a single key,
    // key counts around the 32- and 64-key tiles, the widths whose 32-row shape re-reads Q.
    QTest::newRow("d64 Lq 129 Lk 65") << 2 << 3 << 64 << 129 << 65 << false << false;
    QTest::newRow("d64 Lq 255 Lk 127") << 2 << 3 << 64 << 255 << 127 << false << false;
    QTest::newRow("d64 Lq 1 Lk 1") << 2 << 3 << 64 << 1 << 1 << false << false;
    QTest::newRow("d8 (padded to 16)") << 2 << 3 << 8 << 130 << 70 << false << false;
    QTest::newRow("d48 Lk 33") << 2 << 3 << 48 << 200 << 33 << false << false;
    QTest::newRow("d80 Lk 31") << 2 << 3 << 80 << 140 << 31 << false << false;
    QTest::newRow("d96 Lk 97") << 2 << 3 << 96 << 260 << 97 << false << false;
    QTest::newRow("d128 Lk 95") << 2 << 3 << 128 << 260 << 95 << false << false;
    QTest::newRow("d160 Lk 33") << 2 << 3 << 160 << 260 << 33 << false << false;
    // Causal past one block and one key tile, for each block shape's widths.
    QTest::newRow("causal L 300 d64") << 2 << 4 << 64 << 300 << 300 << true << false;
    QTest::newRow("causal L 77 d40") << 2 << 8 << 40 << 77 << 77 << true << false;
    QTest::newRow("causal L 200 d80") << 2 << 4 << 80 << 200 << 200 << true << false;
    QTest::newRow("causal L 200 d128") << 2 << 4 << 128 << 200 << 200 << true << false;
    QTest::newRow("causal L 150 d160") << 2 << 4 << 160 << 150 << 150 << true << false;
    QTest::newRow("causal Lq 300 > Lk 77 d64") << 2 << 4 << 64 << 300 << 77 << true << false;
  }
  void attention() {
    QFETCH(int, batch);
    QFETCH(int, heads);
    QFETCH(int, head_dim);
    QFETCH(int, lq);
    QFETCH(int, lk);
    QFETCH(bool, causal);
    QFETCH(bool, upcast);
    const std::int64_t c = std::int64_t{heads} * head_dim;
    AttentionParams params;
    params.heads = heads;
    params.scale = 1.0f / std::sqrt(float(head_dim));
    params.causal = causal;
    params.upcast = upcast;
    // q of amplitude 3 makes the softmax peaked rather than nearly uniform.
    compare({{{batch, lq, c}, half_random(batch * lq * c, 13, 3.0f)},
             {{batch, lk, c}, half_random(batch * lk * c, 14, 1.0f)},
             {{batch, lk, c}, half_random(batch * lk * c, 15, 1.0f)}},
            [&](Backend& be, const std::vector<DeviceTensor>& t) { return be.attention(t[0], t[1], t[2], params); });
  }

  // The split-key route (kernels/attention.cuh) forced on and off through AttentionArgs::split, on
  // the same inputs: both against the CPU, and against each other more tightly (they differ only in
  // the maximum P is rounded against and in the merge's float32 rounding). Forced on, it also runs
  // where the automatic choice never splits: two key tiles (the second of one key), a single query
  // row, every head width, and (with 132 multiprocessors) grids of 128-row blocks of both key tiles.
  void attention_split_route_data() {
    QTest::addColumn<int>("heads");
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<int>("lq");
    QTest::addColumn<int>("lk");
    QTest::newRow("h5 d64 Lq 200 Lk 9215") << 5 << 64 << 200 << 9215;
    QTest::newRow("h3 d64 Lq 1 Lk 65") << 3 << 64 << 1 << 65;
    QTest::newRow("h3 d64 Lq 129 Lk 640") << 3 << 64 << 129 << 640;
    QTest::newRow("h3 d16 Lq 70 Lk 300") << 3 << 16 << 70 << 300;
    QTest::newRow("h8 d40 Lq 130 Lk 1000") << 8 << 40 << 130 << 1000;
    QTest::newRow("h4 d80 Lq 70 Lk 777") << 4 << 80 << 70 << 777;
    QTest::newRow("h2 d96 Lq 65 Lk 500") << 2 << 96 << 65 << 500;
    QTest::newRow("h2 d128 Lq 65 Lk 700") << 2 << 128 << 65 << 700;
    QTest::newRow("h8 d160 Lq 100 Lk 513") << 8 << 160 << 100 << 513;
    QTest::newRow("h8 d64 Lq 1100 Lk 300 (128-row blocks)") << 8 << 64 << 1100 << 300;
    QTest::newRow("h8 d128 Lq 1100 Lk 300 (128-row blocks, 32-key tiles)") << 8 << 128 << 1100 << 300;
  }
  void attention_split_route() {
    QFETCH(int, heads);
    QFETCH(int, head_dim);
    QFETCH(int, lq);
    QFETCH(int, lk);
    constexpr int batch = 2;
    constexpr double kRouteTolerance = 2e-3;  // a few fp16 roundings of the output apart at most
    const std::int64_t c = std::int64_t{heads} * head_dim;
    const auto [q, k, v, params] = attention_case(heads, head_dim, lq, lk, 16);
    const auto want = cpu.download(cpu.attention(cpu.upload(q), cpu.upload(k), cpu.upload(v), params)).to_f32();

    const DeviceTensor gq = gpu->upload(q), gk = gpu->upload(k), gv = gpu->upload(v);
    kernels::AttentionArgs args;
    args.q = gq.data_as<const std::uint16_t>();
    args.k = gk.data_as<const std::uint16_t>();
    args.v = gv.data_as<const std::uint16_t>();
    args.batch = batch;
    args.heads = heads;
    args.head_dim = head_dim;
    args.lq = lq;
    args.lk = lk;
    args.scale = params.scale;
    std::vector<float> got[2];
    for (const auto split : {kernels::AttentionSplit::off, kernels::AttentionSplit::on}) {
      const bool on = split == kernels::AttentionSplit::on;
      const DeviceTensor out = gpu->allocate(DType::f16, {batch, lq, c});
      args.out = out.data_as<std::uint16_t>();
      args.split = split;
      if (kernels::attention_path(args) != kernels::AttentionPath::flash2)
        QSKIP("FISEDIT_ATTENTION selects a kernel without the split route");
      const std::size_t bytes = kernels::attention_workspace_bytes(args);
      QCOMPARE(bytes > 0, on);
      if (on) QCOMPARE(kernels::attention(args, gpu->stream(), nullptr), cudaErrorInvalidValue);
      const DeviceTensor workspace = bytes ? gpu->allocate(DType::u8, {static_cast<std::int64_t>(bytes)}) : DeviceTensor();
      QCOMPARE(kernels::attention(args, gpu->stream(), workspace.data()), cudaSuccess);
      got[on] = gpu->download(out).to_f32();
      for (float x : got[on]) QVERIFY2(std::isfinite(x), on ? "non-finite value, split" : "non-finite value, unsplit");
      const double err = relative_l2(got[on], want);
      QVERIFY2(err <= kTolerance, qPrintable(QString("%1 vs CPU: relative L2 error %2").arg(on ? "split" : "unsplit").arg(err)));
    }
    const double err = relative_l2(got[1], got[0]);
    QVERIFY2(err <= kRouteTolerance, qPrintable(QString("split vs unsplit: relative L2 error %1").arg(err)));
  }

  // cuDNN's fused flash attention (cuda_attention_cudnn.cpp) on the U-Net's shapes, forced on: cuDNN
  // must take each one (a refusal fails with cuDNN's reason), agree with the CPU, and stay within a
  // few fp16 roundings of kernels/attention on the same inputs.
  void attention_cudnn_route_data() {
    QTest::addColumn<int>("heads");
    QTest::addColumn<int>("head_dim");
    QTest::addColumn<int>("lq");
    QTest::addColumn<int>("lk");
    QTest::newRow("sd2 L1 self h5 d64 Lq 300 of 9216") << 5 << 64 << 300 << 9216;
    QTest::newRow("sd2 L1 cross h5 d64 Lq 1000 x 77") << 5 << 64 << 1000 << 77;
    QTest::newRow("sd2 L3 self h20 d64 576") << 20 << 64 << 576 << 576;
    QTest::newRow("sd2 mid self h20 d64 144") << 20 << 64 << 144 << 144;
    QTest::newRow("sd15 L1 self h8 d40 Lq 300 of 4096") << 8 << 40 << 300 << 4096;
    QTest::newRow("sd15 L2 cross h8 d80 1024x77") << 8 << 80 << 1024 << 77;
    QTest::newRow("sd15 L3 self h8 d160 256") << 8 << 160 << 256 << 256;
    QTest::newRow("odd sizes h3 d64 Lq 129 Lk 9215") << 3 << 64 << 129 << 9215;
    QTest::newRow("one query h2 d128 Lq 1 Lk 65") << 2 << 128 << 1 << 65;
  }
  void attention_cudnn_route() {
    QFETCH(int, heads);
    QFETCH(int, head_dim);
    QFETCH(int, lq);
    QFETCH(int, lk);
    constexpr double kRouteTolerance = 2e-3;  // a few fp16 roundings of the output apart at most
    const auto [q, k, v, params] = attention_case(heads, head_dim, lq, lk, 19);
    const auto want = cpu.download(cpu.attention(cpu.upload(q), cpu.upload(k), cpu.upload(v), params)).to_f32();
    const DeviceTensor gq = gpu->upload(q), gk = gpu->upload(k), gv = gpu->upload(v);
    const AttentionRouteBack route_back{*gpu};

    gpu->set_attention_route(CudaBackend::AttentionRoute::kernels);
    const auto before = gpu->attention_cudnn_counters();
    const auto by_kernels = gpu->download(gpu->attention(gq, gk, gv, params)).to_f32();
    QCOMPARE(gpu->attention_cudnn_counters().calls, before.calls);

    gpu->set_attention_route(CudaBackend::AttentionRoute::cudnn);
    const auto start = std::chrono::steady_clock::now();
    const auto by_cudnn = gpu->download(gpu->attention(gq, gk, gv, params)).to_f32();
    const double first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    const auto after = gpu->attention_cudnn_counters();
    QVERIFY2(after.calls == before.calls + 1, qPrintable(QString::fromStdString("cuDNN did not run it: " + after.last_refusal)));
    std::printf("cuDNN attention [2, %d heads, %d x %d, D %d]: first call %.1f ms (plans so far %llu in %.1f ms)\n",
                heads, lq, lk, head_dim, first_ms, static_cast<unsigned long long>(after.plans), after.plan_ms);
    for (float x : by_cudnn) QVERIFY2(std::isfinite(x), "non-finite value from cuDNN");
    const double err = relative_l2(by_cudnn, want);
    QVERIFY2(err <= kTolerance, qPrintable(QString("cuDNN vs CPU: relative L2 error %1").arg(err)));
    const double apart = relative_l2(by_cudnn, by_kernels);
    QVERIFY2(apart <= kRouteTolerance, qPrintable(QString("cuDNN vs kernels: relative L2 error %1").arg(apart)));
  }

  // A shape whose cuDNN plan is first made while a step is being recorded (a graph capture; plan
  // making never touches the stream) replays to the same bits as the same call run op by op; and the
  // automatic route leaves a sparse edit's few queries to kernels/attention while a dense
  // self-attention goes to cuDNN.
  void attention_cudnn_recorded_and_routed() {
    const auto whole = attention_case(5, 64, 2304, 2304, 22);
    const auto& params = whole.params;
    const DeviceTensor q = gpu->upload(whole.q), k = gpu->upload(whole.k), v = gpu->upload(whole.v);
    const AttentionRouteBack route_back{*gpu};
    gpu->set_attention_route(CudaBackend::AttentionRoute::cudnn);
    const auto before = gpu->attention_cudnn_counters();
    DeviceTensor recorded_out;
    std::string why;
    auto recording = gpu->record([&] { recorded_out = gpu->attention(q, k, v, params); }, &why);
    QVERIFY2(recording, why.c_str());
    QCOMPARE(gpu->attention_cudnn_counters().plans, before.plans + 1);  // made during the capture
    recording->replay();
    const Tensor replayed = gpu->download(recorded_out);
    const Tensor direct = gpu->download(gpu->attention(q, k, v, params));
    QCOMPARE(gpu->attention_cudnn_counters().calls, before.calls + 2);
    QVERIFY(replayed.to_f32() == direct.to_f32());

    gpu->set_attention_route(CudaBackend::AttentionRoute::automatic);
    const auto routed = gpu->attention_cudnn_counters();
    const DeviceTensor few = gpu->upload(attention_case(5, 64, 37, 2304, 25).q);
    (void)gpu->download(gpu->attention(few, k, v, params));  // few queries: kernels
    QCOMPARE(gpu->attention_cudnn_counters().calls, routed.calls);
    (void)gpu->download(gpu->attention(q, k, v, params));  // the whole self-attention: cuDNN
    QCOMPARE(gpu->attention_cudnn_counters().calls, routed.calls + 1);
  }
};

FISEDIT_GPU_TEST_MAIN(TestCudaGemm)

#include "test_cuda_gemm.moc"
