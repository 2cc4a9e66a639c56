// Layering check (tests/layering.cmake): the CUDA backend is sealed; the UI sees none of it. This must
// not compile.
#include "backend/cuda/cuda_backend.h"
