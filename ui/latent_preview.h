#pragma once
// A picture of the latents while the U-Net is still working on them, without the VAE: the decoder
// costs about as much as several denoising steps, a linear map from the 4 latent channels to RGB
// costs nothing and already shows composition and colours. The factors are the ones many SD UIs use
// for SD1 and SD2 latents (a least-squares fit of decoded colours to latents); other latent spaces
// get no preview. An edit's preview keeps the previous image outside the region it re-renders.
// Engine-independent: it takes plain floats, so the UI thread's tests need no model.
#include <QImage>

#include <span>

namespace fisedit::ui {

// How far a latent pixel is magnified: the VAE decodes one latent pixel to 8x8 image pixels.
inline constexpr int kLatentToImageScale = 8;

// `latents`: [channels, height, width], float, batch 1. Returns an RGB888 image of 8*width x 8*height
// (each latent pixel a block of 8x8), or a null image when there are not 4 channels or the sizes
// disagree.
QImage latentPreview(std::span<const float> latents, int channels, int height, int width);

// The preview of an edit's step: `base`, the image being edited (8*width x 8*height), with the latent
// preview in the latent cells `region` marks ([height, width], non-zero where the edit recomputes)
// and the base's own pixels everywhere else: the picture stays the previous image while only the
// region being re-rendered changes. RGB888; null when the sizes disagree.
QImage editPreview(const QImage& base, std::span<const float> latents, int channels, int height, int width,
                   std::span<const float> region);

}  // namespace fisedit::ui
