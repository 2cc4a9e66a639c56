// GPU: the device conversion kernels against the host conversions, bit for bit, on every half value
// and on random floats (including subnormals, overflow and ties).
#include "gpu_test_main.h"
#include "convert.cuh"
#include "core/half.h"

#include <QtTest>

#include <cuda_runtime.h>

#include <cstdio>
#include <random>

using namespace fisedit;

namespace {

template <class T>
struct RawDeviceBuffer {
  T* ptr = nullptr;
  explicit RawDeviceBuffer(std::size_t n) {
    if (cudaMalloc(&ptr, n * sizeof(T)) != cudaSuccess) ptr = nullptr;
  }
  ~RawDeviceBuffer() { cudaFree(ptr); }
};

}  // namespace

class TestGpuConvert : public QObject {
  Q_OBJECT

private slots:
  void half_to_float_every_value() {
    std::vector<std::uint16_t> in(0x10000);
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::uint16_t>(i);
    RawDeviceBuffer<std::uint16_t> d_in(in.size());
    RawDeviceBuffer<float> d_out(in.size());
    QVERIFY(d_in.ptr && d_out.ptr);
    QCOMPARE(cudaMemcpy(d_in.ptr, in.data(), in.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    QCOMPARE(kernels::half_to_float(d_in.ptr, d_out.ptr, in.size(), nullptr), cudaSuccess);
    std::vector<float> out(in.size());
    QCOMPARE(cudaMemcpy(out.data(), d_out.ptr, out.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::size_t i = 0; i < in.size(); ++i) {
      const float expected = half_to_float(in[i]);
      if (std::isnan(expected)) {
        QVERIFY(std::isnan(out[i]));
        continue;
      }
      QVERIFY2(std::memcmp(&out[i], &expected, 4) == 0, qPrintable(QString("half bits 0x%1").arg(i, 4, 16)));
    }
  }

  void float_to_half_random() {
    std::mt19937 rng(1234);
    std::vector<float> in;
    std::uniform_real_distribution<float> exponent(-30.0f, 17.0f);
    std::normal_distribution<float> mantissa;
    for (int i = 0; i < 1000003; ++i) in.push_back(mantissa(rng) * std::exp2(exponent(rng)));  // odd size
    for (float f : {65504.0f, 65519.0f, 65520.0f, 1e30f, -0.0f, 2.98023223876953125e-08f, 1.00048828125f}) in.push_back(f);
    RawDeviceBuffer<float> d_in(in.size());
    RawDeviceBuffer<std::uint16_t> d_out(in.size());
    QVERIFY(d_in.ptr && d_out.ptr);
    QCOMPARE(cudaMemcpy(d_in.ptr, in.data(), in.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    QCOMPARE(kernels::float_to_half(d_in.ptr, d_out.ptr, in.size(), nullptr), cudaSuccess);
    std::vector<std::uint16_t> out(in.size());
    QCOMPARE(cudaMemcpy(out.data(), d_out.ptr, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::size_t i = 0; i < in.size(); ++i)
      QVERIFY2(out[i] == float_to_half(in[i]), qPrintable(QString("value %1").arg(double(in[i]), 0, 'g', 9)));
  }

  void bf16_to_half_random() {
    std::vector<std::uint16_t> in;
    for (std::uint32_t b = 0; b < 0x10000; ++b)
      if ((b & 0x7f80) != 0x7f80) in.push_back(static_cast<std::uint16_t>(b));  // finite bf16 values
    RawDeviceBuffer<std::uint16_t> d_in(in.size()), d_out(in.size());
    QVERIFY(d_in.ptr && d_out.ptr);
    QCOMPARE(cudaMemcpy(d_in.ptr, in.data(), in.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    QCOMPARE(kernels::bf16_to_half(d_in.ptr, d_out.ptr, in.size(), nullptr), cudaSuccess);
    std::vector<std::uint16_t> out(in.size());
    QCOMPARE(cudaMemcpy(out.data(), d_out.ptr, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (std::size_t i = 0; i < in.size(); ++i)
      QVERIFY2(out[i] == float_to_half(bf16_to_float(in[i])), qPrintable(QString("bf16 bits 0x%1").arg(in[i], 4, 16)));
  }
};

FISEDIT_GPU_TEST_MAIN(TestGpuConvert)

#include "test_gpu_convert.moc"
