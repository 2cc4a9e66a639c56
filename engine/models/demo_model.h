#pragma once
// The built-in demo model: a tiny network of Stable Diffusion 1.5's architecture with random weights,
// written as a diffusers folder at build time, so every feature of the app can be tried before any
// real weights are at hand. Its images are coloured noise. Its tokenizer is byte-level BPE without
// merges (a token per UTF-8 byte, CLIP's special tokens), generated rather than copied: CLIP's own
// vocabulary is not part of fisedit.
#include <filesystem>

namespace fisedit {

// Writes the demo model's diffusers folder into `dir` (created if needed; files replaced atomically).
void write_demo_model(const std::filesystem::path& dir);

}  // namespace fisedit
