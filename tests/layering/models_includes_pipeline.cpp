// Layering check (tests/layering.cmake): the models sit below the pipeline. This must not compile.
#include "pipeline/edit_session.h"
