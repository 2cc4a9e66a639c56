#pragma once
// Starting images for image to image: PNG or JPEG files read as 8-bit images, brought to RGB and to a
// generation's size. (PNG writing and text chunks: image_file.h.)
#include "io/image_file.h"

#include <filesystem>

namespace fisedit {

// A baseline or progressive JPEG (stb_image), hardened as read_png: the size is read from the header and
// checked against kMaxImageSide before anything is decoded; every failure is Error(not_found /
// corrupt_file) naming the file. Grey JPEGs come back with 1 channel, colour ones with 3 (CMYK and
// 12-bit JPEGs are refused, as stb reads neither).
Image8 read_jpeg(const std::filesystem::path& path);
// A PNG (read_png) or a JPEG (read_jpeg), told apart by their signatures, not the file name; anything
// else is Error(corrupt_file) "<path>: not a PNG or JPEG file".
Image8 read_image(const std::filesystem::path& path);

// RGB: grey replicated, alpha dropped (as PIL's convert("RGB"), which diffusers' img2img applies).
// Throws Error(invalid_argument) for an inconsistent image.
Image8 to_rgb(const Image8& image);
// An RGB copy exactly width x height: the image itself when it has that size, otherwise the largest
// centred region of the target's aspect ratio, resampled with a triangle (bilinear, antialiased when
// shrinking) filter in both directions.
Image8 fit_image(const Image8& image, int width, int height);

}  // namespace fisedit
