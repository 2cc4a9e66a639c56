#pragma once
// diffusers' ResnetBlock2D in its "default" form (no time-embedding scale-shift), as the VAE uses
// it: norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus the input (through a 1x1
// conv_shortcut when the channel count changes). The U-Net's variant adds a time embedding after
// conv1.
#include "models/layers.h"

#include <optional>

namespace fisedit {

struct ResnetBlock2D {
  GroupNorm norm1;
  Conv2d conv1;
  GroupNorm norm2;
  Conv2d conv2;
  std::optional<Conv2d> conv_shortcut;

  // `prefix` like "decoder.up_blocks.0.resnets.1"; both norms use `groups` and `eps`.
  static ResnetBlock2D load(const WeightSource& w, const std::string& prefix, std::int64_t in, std::int64_t out,
                            int groups, float eps);
  // [N, H, W, in] -> [N, H, W, out]
  DeviceTensor forward(Backend& b, const DeviceTensor& x, NormTape* tape = nullptr) const;
};

}  // namespace fisedit
