// libFuzzer target: a .fisedit project file through ui::loadProject (nodes, requests, base64 PNGs), no GUI.
#include "ui/project_file.h"
#include "fuzz_support.h"

#include <QString>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fisedit::fuzz::write_input("project.fisedit", data, size);
  // Never throws: a damaged project is reported in the result (project_file.h).
  const auto result = fisedit::ui::loadProject(QString::fromStdString(path.string()));
  if (result.ok()) {
    for (const auto& record : result.content.records) (void)fisedit::ui::changedFraction(record);
  }
  return 0;
}
