// fisedit-make-demo DIR: writes the built-in demo model (random weights) at build time.
#include "core/error.h"
#include "models/demo_model.h"

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fisedit-make-demo DIR\n");
    return 2;
  }
  try {
    fisedit::write_demo_model(argv[1]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fisedit-make-demo: %s\n", e.what());
    return 1;
  }
}
