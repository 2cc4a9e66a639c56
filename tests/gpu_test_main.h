#pragma once
// main() of a gpu-labelled test: without a usable CUDA device it prints why and exits 77, which CTest
// reports as Skipped (never as passed); otherwise it runs the Qt Test class.
#include "backend/cuda/cuda_backend.h"

#include <QtTest>

#include <cstdio>
#include <string>

#define FISEDIT_GPU_TEST_MAIN(TestClass)                                                                      \
  int main(int argc, char** argv) {                                                                           \
    std::string why;                                                                                          \
    if (!fisedit::CudaBackend::device_available(&why)) {                                                      \
      std::printf("SKIPPED: no CUDA device (%s); run the gpu-labelled tests on a machine with an NVIDIA GPU\n", \
                  why.c_str());                                                                               \
      return 77;                                                                                              \
    }                                                                                                         \
    TestClass test;                                                                                           \
    return QTest::qExec(&test, argc, argv);                                                                   \
  }
