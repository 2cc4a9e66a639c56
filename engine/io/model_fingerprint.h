#pragma once
// A short identity of a loaded model's weights and noise schedule, for telling whether a saved
// history was made with the model that is open now: its edits can be replayed (their activation
// caches rebuilt) only with the same weights. It reads every tensor's name, dtype and shape and a few
// bytes from the start, the middle and the end of its data, so it costs a few page faults per tensor,
// not a pass over gigabytes; two models that differ anywhere a fine-tune, a merge or a different
// random initialisation touches differ in it. Not a checksum against tampering.
#include "io/model_loader.h"

#include <string>

namespace fisedit {

// 16 lower-case hex digits; the same for the same files wherever they are (path and format excluded:
// a checkpoint moved to another folder is still the same model).
std::string model_fingerprint(const LoadedModel& model);

}  // namespace fisedit
