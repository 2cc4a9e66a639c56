// The VAE's resnet block (resnet.h): loading and forward.
#include "models/resnet.h"

namespace fisedit {

ResnetBlock2D ResnetBlock2D::load(const WeightSource& w, const std::string& prefix, std::int64_t in,
                                  std::int64_t out, int groups, float eps) {
  const auto same = Conv2dParams::same(1, 1);
  ResnetBlock2D r{
      GroupNorm::load(w, prefix + ".norm1", in, groups, eps),
      Conv2d::load(w, prefix + ".conv1", in, out, 3, same),
      GroupNorm::load(w, prefix + ".norm2", out, groups, eps),
      Conv2d::load(w, prefix + ".conv2", out, out, 3, same),
      std::nullopt,
  };
  if (in != out) r.conv_shortcut = Conv2d::load(w, prefix + ".conv_shortcut", in, out, 1, {});
  return r;
}

DeviceTensor ResnetBlock2D::forward(Backend& b, const DeviceTensor& x, NormTape* tape) const {
  // [N, H, W, in] -> [N, H, W, out]
  const auto h = conv1.forward(b, norm1.forward(b, x, /*silu=*/true, tape));
  // [N, H, W, out] -> [N, H, W, out]
  const auto shortcut = conv_shortcut ? conv_shortcut->forward(b, x) : x;
  return conv2.forward_add(b, norm2.forward(b, h, /*silu=*/true, tape), shortcut);
}

}  // namespace fisedit
