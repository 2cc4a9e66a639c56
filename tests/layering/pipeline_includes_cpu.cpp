// Layering check (tests/layering.cmake): the pipeline computes through Backend, never a backend of its
// own choosing. This must not compile.
#include "backend/cpu/cpu_backend.h"
