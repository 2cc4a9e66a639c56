#pragma once
// The history test_faults' writer saves (fault_writer.cpp) and the test checks a file against: one
// generation's worth of nodes whose prompts and pixels say which generation they are.
#include "ui/project_file.h"

#include <QImage>

#include <cstdint>

namespace fisedit::test {

inline constexpr int kFaultNodes = 6;
inline constexpr int kFaultSide = 256;

// Noise (so the PNGs do not compress away and a write takes a while), seeded by generation and node.
inline QImage fault_image(int generation, int node) {
  QImage image(kFaultSide, kFaultSide, QImage::Format_RGB888);
  std::uint32_t state = 2654435761u * static_cast<std::uint32_t>(generation * 131 + node + 1);
  for (int y = 0; y < kFaultSide; ++y) {
    uchar* row = image.scanLine(y);
    for (int x = 0; x < 3 * kFaultSide; ++x) {
      state = state * 1664525u + 1013904223u;
      row[x] = static_cast<uchar>(state >> 24);
    }
  }
  return image;
}

inline ui::ProjectContent fault_content(int generation) {
  ui::ProjectContent content;
  content.modelPath = QStringLiteral("/models/fault");
  content.modelFamily = QStringLiteral("SD1.x");
  for (int i = 0; i < kFaultNodes; ++i) {
    ui::HistoryRecord r;
    r.id = static_cast<quint64>(i + 1);
    r.request = GenerationRequest{"generation " + std::to_string(generation) + " node " + std::to_string(i), "", 7, 4,
                                  7.5f, "ddim", kFaultSide, kFaultSide, std::nullopt};
    r.image = fault_image(generation, i);
    content.records.append(r);
  }
  return content;
}

}  // namespace fisedit::test
