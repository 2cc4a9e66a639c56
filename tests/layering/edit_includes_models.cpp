// Layering check (tests/layering.cmake): the edit method sits below the models. This must not compile.
#include "models/unet.h"
