// Training-time augmentation: one geometric transform applied to image and mask alike, then
// photometric changes to the image only, then normalisation into the caller's float buffer.
//
//   AugmentConfig cfg{.enabled = true, .crop = 256};
//   augment_sample(cfg, seed, epoch, global_index, image, mask, H, W, out_image, out_mask);
//
// Determinism: every random draw comes from crackseg::SampleRng keyed by (seed, epoch, global
// sample index, purpose): Purpose::augment (flips, rotation, scale, brightness, contrast),
// Purpose::crop (crop offset) and Purpose::noise (per-pixel noise). Nothing depends on rank,
// thread or call order, so the same sample gives the same bytes on 1 or N ranks. All values of
// a stream are always drawn in a fixed order, even for disabled transforms, so switching one
// transform off does not change the draws of the others.
//
// Geometry: flips, rotation and scale are composed about the image centre into one affine
// map, and the crop window is cut from the transformed canvas (same H x W as the input), so
// the whole chain is ONE cv::warpAffine per array (image and mask use the same matrix). The
// mask is warped with INTER_NEAREST only, so it stays exactly 0/1; the image with
// INTER_LINEAR. With no rotation/scale the map is an integer shift/flip and both are exact
// copies.
//
// Output normalisation: image values are x / 255 (float, in [0, 1]; photometric changes are
// clamped to [0, 255] first, as a real 8-bit image would be). No mean/std subtraction: models
// start with a convolution or batchnorm that absorbs the offset. Layout: (H', W', 3) float32
// per sample (NHWC for a batch), channel order as stored in the dataset; mask (H', W') uint8.
// H' = W' = crop when crop > 0, else H' = H, W' = W.
#pragma once
#include <cstdint>
#include <span>

namespace crackseg::io {

struct AugmentConfig {
  bool enabled = true;          // false: no transform at all (crop, if set, still applies)
  int crop = 0;                 // random square crop side; 0 = whole image
  bool hflip = true;            // each flip with probability 1/2
  bool vflip = true;
  float rotate_deg = 30.0f;     // angle uniform in [-rotate_deg, +rotate_deg]
  float scale_min = 0.8f;       // zoom uniform in [scale_min, scale_max]
  float scale_max = 1.2f;
  float brightness = 0.2f;      // multiplicative factor uniform in [1 - b, 1 + b]
  float contrast = 0.2f;        // factor uniform in [1 - c, 1 + c] about the image mean
  float noise_sigma = 10.0f;    // Gaussian noise std in 8-bit units (0..255); 0 = none
};

// The drawn values for one sample; exposed so tests can apply a chosen transform.
struct AugmentParams {
  bool hflip = false, vflip = false;
  double angle_deg = 0.0;       // counter-clockwise as displayed (OpenCV's convention)
  double scale = 1.0;           // > 1 zooms in
  float brightness = 1.0f;      // factors; 1 = unchanged
  float contrast = 1.0f;
  float noise_sigma = 0.0f;
  int crop_x = 0, crop_y = 0;   // top-left of the crop window in the transformed canvas
  int out_h = 0, out_w = 0;     // output size
};

// Draws the parameters for sample `index` of `epoch` (see the determinism note above).
// Throws InputError when crop exceeds the image or the config is out of range.
[[nodiscard]] AugmentParams draw_augment_params(const AugmentConfig& cfg, uint64_t seed,
                                                uint64_t epoch, uint64_t index, int H, int W);

// Applies `p` to one sample. image (H, W, 3) uint8, mask (H, W) uint8 in {0, 1};
// out_image (p.out_h, p.out_w, 3) float, out_mask (p.out_h, p.out_w) uint8. Noise draws use
// (seed, epoch, index, Purpose::noise). Sizes are checked and reported on mismatch.
void apply_augment(const AugmentParams& p, uint64_t seed, uint64_t epoch, uint64_t index,
                   std::span<const uint8_t> image, std::span<const uint8_t> mask, int H, int W,
                   std::span<float> out_image, std::span<uint8_t> out_mask);

// draw_augment_params + apply_augment.
void augment_sample(const AugmentConfig& cfg, uint64_t seed, uint64_t epoch, uint64_t index,
                    std::span<const uint8_t> image, std::span<const uint8_t> mask, int H, int W,
                    std::span<float> out_image, std::span<uint8_t> out_mask);

// Output side for an input of H x W under `cfg` (crop or the whole image).
[[nodiscard]] inline int augment_out_h(const AugmentConfig& cfg, int H) { return cfg.crop > 0 ? cfg.crop : H; }
[[nodiscard]] inline int augment_out_w(const AugmentConfig& cfg, int W) { return cfg.crop > 0 ? cfg.crop : W; }

}  // namespace crackseg::io
