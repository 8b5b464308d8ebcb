// Image and mask codecs (OpenCV) with the checks ingestion needs. Everything crackseg keeps in
// memory or in HDF5 is RGB; OpenCV's BGR order stays inside this file.
#pragma once
#include <opencv2/core.hpp>

#include <cstdint>
#include <filesystem>

namespace crackseg::io {

// Reads an image file as 8-bit RGB [H, W, 3] (CV_8UC3). Gray is replicated, RGBA drops its
// alpha (the colour channels are the photo), 16-bit is scaled to 8-bit. Throws InputError
// naming the file when it is missing, unreadable, truncated (JPEG without its end marker,
// PNG without IEND) or empty.
[[nodiscard]] cv::Mat load_image_rgb(const std::filesystem::path& path);

// Reads a mask file as CV_8U with 0/1 values: crack = value > 127 (> 32767 for 16-bit) in
// gray; RGB/RGBA masks use the brightest colour channel; an RGBA mask whose alpha is 0
// everywhere has no usable values. Also throws InputError (naming the file) when the mask is
// unreadable or truncated, or when every pixel is crack (a blank or inverted mask).
[[nodiscard]] cv::Mat load_mask01(const std::filesystem::path& path);

// Converts a decoded mask of any supported depth/channels (as cv::imread(IMREAD_UNCHANGED)
// returns it) to 0/1; `what` names it in errors.
[[nodiscard]] cv::Mat mask_to01(const cv::Mat& decoded, const std::string& what);

// Area interpolation for images (no aliasing when shrinking), nearest for masks (stays 0/1).
[[nodiscard]] cv::Mat resize_image(const cv::Mat& rgb, int height, int width);
[[nodiscard]] cv::Mat resize_mask(const cv::Mat& mask01, int height, int width);

// PNG writers for outputs (predictions, previews): rgb [H, W, 3]; mask 0/1 written as 0/255.
void save_image_rgb(const std::filesystem::path& path, const uint8_t* rgb, int height, int width);
void save_mask01(const std::filesystem::path& path, const uint8_t* mask, int height, int width);

// True for the extensions ingestion treats as images (.png .jpg .jpeg .bmp .tif .tiff, any case).
[[nodiscard]] bool is_image_file(const std::filesystem::path& path);

}  // namespace crackseg::io
