// Test helper for test_faults: saves a project or exports a history, generation after generation, through ui/project_file, until killed.
//   fault_writer save PATH FIRST_GENERATION    writes PATH again and again (generation FIRST, FIRST+1, ...)
//   fault_writer export FOLDER GENERATION      exports once to FOLDER
// Prints "done N" after each write that returned. The content of generation N is fault_content(N).
#include "fault_content.h"

#include "ui/project_file.h"

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: fault_writer save|export PATH GENERATION\n");
    return 2;
  }
  const std::string mode = argv[1];
  const QString path = QString::fromLocal8Bit(argv[2]);
  for (long generation = std::atol(argv[3]);; ++generation) {
    const auto content = fisedit::test::fault_content(static_cast<int>(generation));
    const QString error = mode == "save" ? fisedit::ui::saveProject(path, content) : fisedit::ui::exportHistory(path, content);
    if (!error.isEmpty()) {
      std::fprintf(stderr, "%s\n", error.toLocal8Bit().constData());
      return 1;
    }
    std::printf("done %ld\n", generation);
    std::fflush(stdout);
    if (mode != "save") return 0;
  }
}
