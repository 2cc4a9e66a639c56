// Layering check (tests/layering.cmake): core/io must not see the pipeline. This must not compile.
#include "pipeline/generation.h"
