// Layering check (tests/layering.cmake), the control: what links the engine sees the pipeline. This
// must compile.
#include "pipeline/generation.h"
