#include "io/augment/augment.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "src/core/error.hpp"
#include "src/core/rng.hpp"

namespace crackseg::io {
namespace {

void check_config(const AugmentConfig& cfg, int H, int W) {
  if (H <= 0 || W <= 0)
    throw InputError("augment: image size " + std::to_string(H) + "x" + std::to_string(W) + " is empty");
  if (cfg.crop < 0 || cfg.crop > H || cfg.crop > W)
    throw InputError("augment: crop " + std::to_string(cfg.crop) + " does not fit the " +
                     std::to_string(H) + "x" + std::to_string(W) + " images (0 = whole image)");
  if (!(cfg.scale_min > 0.0f) || cfg.scale_max < cfg.scale_min)
    throw InputError("augment: scale range [" + std::to_string(cfg.scale_min) + ", " +
                     std::to_string(cfg.scale_max) + "] must be positive and ordered");
  if (cfg.rotate_deg < 0.0f || cfg.brightness < 0.0f || cfg.brightness >= 1.0f || cfg.contrast < 0.0f ||
      cfg.contrast >= 1.0f || cfg.noise_sigma < 0.0f)
    throw InputError("augment: rotate_deg, brightness, contrast, noise_sigma must be >= 0 and "
                     "brightness, contrast < 1 (got " + std::to_string(cfg.rotate_deg) + ", " +
                     std::to_string(cfg.brightness) + ", " + std::to_string(cfg.contrast) + ", " +
                     std::to_string(cfg.noise_sigma) + ")");
}

void check_size(const char* what, size_t got, size_t want) {
  if (got != want)
    throw Error(std::string("augment: ") + what + " has " + std::to_string(got) + " elements, expected " +
                std::to_string(want));
}

// The standard normal's quantiles at the 2^16 midpoints (k + 1/2) / 2^16. Noise values are
// looked up with 16 random bits each: an inverse-CDF sampler exact at that resolution (tails
// cut at +-4.3 sigma, immaterial for sigma-10 pixel noise) that costs one table read per value
// instead of a log, a sqrt and a sin/cos (Box-Muller made noise ~70% of augmentation time).
const std::vector<float>& normal_quantiles() {
  static const std::vector<float> table = [] {
    constexpr int n = 1 << 16;
    std::vector<float> q(n);
    for (int k = 0; k < n / 2; ++k) {
      const double p = (k + 0.5) / n;  // lower half: p < 1/2, quantile < 0
      // Abramowitz & Stegun 26.2.23 (|error| < 4.5e-4), then Newton on Phi(x) = erfc(-x/sqrt2)/2.
      const double t = std::sqrt(-2.0 * std::log(p));
      double x = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) /
                           (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
      for (int it = 0; it < 3; ++it) {
        const double cdf = 0.5 * std::erfc(-x / std::numbers::sqrt2);
        const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
        x -= (cdf - p) / pdf;
      }
      q[k] = static_cast<float>(x);
      q[n - 1 - k] = static_cast<float>(-x);
    }
    return q;
  }();
  return table;
}

// Fills `out` with N(0, sigma^2) values from the sample's noise stream, two 16-bit lookups
// per 32-bit word, in element order (so the values depend only on the key).
void fill_noise(float* out, size_t n, float sigma, uint64_t seed, uint64_t epoch, uint64_t index) {
  const float* q = normal_quantiles().data();
  SampleRng rng(seed, epoch, index, Purpose::noise);
  for (size_t i = 0; i < n; i += 2) {
    const uint32_t w = rng.next_u32();
    out[i] = sigma * q[w & 0xffffu];
    if (i + 1 < n) out[i + 1] = sigma * q[w >> 16];
  }
}

}  // namespace

AugmentParams draw_augment_params(const AugmentConfig& cfg, uint64_t seed, uint64_t epoch,
                                  uint64_t index, int H, int W) {
  check_config(cfg, H, W);
  AugmentParams p;
  p.out_h = augment_out_h(cfg, H);
  p.out_w = augment_out_w(cfg, W);
  if (cfg.enabled) {
    // Fixed draw order; every value drawn whatever the config (see header).
    SampleRng rng(seed, epoch, index, Purpose::augment);
    const bool hf = rng.uniform() < 0.5f, vf = rng.uniform() < 0.5f;
    const float a = rng.uniform(-1.0f, 1.0f), s = rng.uniform();
    const float b = rng.uniform(-1.0f, 1.0f), c = rng.uniform(-1.0f, 1.0f);
    p.hflip = cfg.hflip && hf;
    p.vflip = cfg.vflip && vf;
    p.angle_deg = static_cast<double>(cfg.rotate_deg) * a;
    p.scale = cfg.scale_min + static_cast<double>(cfg.scale_max - cfg.scale_min) * s;
    p.brightness = 1.0f + cfg.brightness * b;
    p.contrast = 1.0f + cfg.contrast * c;
    p.noise_sigma = cfg.noise_sigma;
  }
  if (cfg.crop > 0) {
    SampleRng rng(seed, epoch, index, Purpose::crop);
    p.crop_y = static_cast<int>(rng.below(static_cast<uint32_t>(H - cfg.crop + 1)));
    p.crop_x = static_cast<int>(rng.below(static_cast<uint32_t>(W - cfg.crop + 1)));
  }
  return p;
}

void apply_augment(const AugmentParams& p, uint64_t seed, uint64_t epoch, uint64_t index,
                   std::span<const uint8_t> image, std::span<const uint8_t> mask, int H, int W,
                   std::span<float> out_image, std::span<uint8_t> out_mask) {
  const int oh = p.out_h, ow = p.out_w;
  if (oh <= 0 || ow <= 0 || p.crop_x < 0 || p.crop_y < 0 || p.crop_x + ow > W || p.crop_y + oh > H)
    throw Error("augment: output window " + std::to_string(oh) + "x" + std::to_string(ow) + " at (" +
                std::to_string(p.crop_y) + ", " + std::to_string(p.crop_x) + ") does not fit the " +
                std::to_string(H) + "x" + std::to_string(W) + " image");
  check_size("image (H, W, 3)", image.size(), static_cast<size_t>(H) * W * 3);
  check_size("mask (H, W)", mask.size(), static_cast<size_t>(H) * W);
  check_size("out_image (H', W', 3)", out_image.size(), static_cast<size_t>(oh) * ow * 3);
  check_size("out_mask (H', W')", out_mask.size(), static_cast<size_t>(oh) * ow);

  // cv::Mat headers over the caller's memory; OpenCV never writes through the const ones.
  const cv::Mat src(H, W, CV_8UC3, const_cast<uint8_t*>(image.data()));
  const cv::Mat msrc(H, W, CV_8UC1, const_cast<uint8_t*>(mask.data()));
  cv::Mat dmask(oh, ow, CV_8UC1, out_mask.data());
  // (oh, ow, 3) uint8 scratch, per thread so prefetch workers can share nothing and a
  // steady stream of same-sized samples reuses it instead of allocating per sample.
  thread_local cv::Mat warped;

  const bool geometric = p.hflip || p.vflip || p.angle_deg != 0.0 || p.scale != 1.0;
  if (!geometric) {
    // Pure crop: exact copies, no interpolation.
    const cv::Rect win(p.crop_x, p.crop_y, ow, oh);
    src(win).copyTo(warped);
    msrc(win).copyTo(dmask);
  } else {
    // Inverse map (output pixel -> source pixel), built directly so no matrix inversion
    // rounds an exact flip/shift: with centre c, canvas q = (u + crop_x, v + crop_y),
    //   src = c + F * R(-angle) * (q - c) / scale,   F = diag(+-1, +-1) (flips are involutions).
    const double cx = (W - 1) * 0.5, cy = (H - 1) * 0.5;
    const double th = p.angle_deg * std::numbers::pi / 180.0;
    const double cs = std::cos(th) / p.scale, sn = std::sin(th) / p.scale;
    const double fx = p.hflip ? -1.0 : 1.0, fy = p.vflip ? -1.0 : 1.0;
    // R(-angle) for y pointing down (OpenCV's counter-clockwise-as-displayed convention):
    // [[cos, -sin], [sin, cos]] maps canvas offsets back to source offsets.
    const double a00 = fx * cs, a01 = -fx * sn, a10 = fy * sn, a11 = fy * cs;
    const double qx0 = p.crop_x - cx, qy0 = p.crop_y - cy;
    const cv::Matx23d m(a00, a01, cx + a00 * qx0 + a01 * qy0,  //
                        a10, a11, cy + a10 * qx0 + a11 * qy0);
    // Reflecting borders: rotation and zoom-out expose area outside the source. A constant
    // (black) fill would paint dark wedges that look like the dark cracks the net must find;
    // reflection continues the surface texture, and because the mask is reflected by the same
    // map the crack labels stay consistent with what the image shows there.
    // BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba) avoids a doubled edge row.
    cv::warpAffine(src, warped, m, cv::Size(ow, oh), cv::INTER_LINEAR | cv::WARP_INVERSE_MAP,
                   cv::BORDER_REFLECT_101);
    cv::warpAffine(msrc, dmask, m, cv::Size(ow, oh), cv::INTER_NEAREST | cv::WARP_INVERSE_MAP,
                   cv::BORDER_REFLECT_101);
  }

  // Photometric: v = brightness * (contrast * (x - mean) + mean) + noise, written as
  // a * x + b so that factors of exactly 1 leave x untouched; clamp to 8-bit range; / 255.
  const size_t n = static_cast<size_t>(oh) * ow * 3;
  const uint8_t* w = warped.ptr<uint8_t>();
  float a = 1.0f, b = 0.0f;
  if (p.contrast != 1.0f || p.brightness != 1.0f) {
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += w[i];
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    a = p.brightness * p.contrast;
    b = p.brightness * (1.0f - p.contrast) * mean;
  }
  float* out = out_image.data();
  if (p.noise_sigma > 0.0f) {
    fill_noise(out, n, p.noise_sigma, seed, epoch, index);
    for (size_t i = 0; i < n; ++i)
      out[i] = std::clamp(a * static_cast<float>(w[i]) + b + out[i], 0.0f, 255.0f) / 255.0f;
  } else {
    for (size_t i = 0; i < n; ++i) out[i] = std::clamp(a * static_cast<float>(w[i]) + b, 0.0f, 255.0f) / 255.0f;
  }
}

void augment_sample(const AugmentConfig& cfg, uint64_t seed, uint64_t epoch, uint64_t index,
                    std::span<const uint8_t> image, std::span<const uint8_t> mask, int H, int W,
                    std::span<float> out_image, std::span<uint8_t> out_mask) {
  const AugmentParams p = draw_augment_params(cfg, seed, epoch, index, H, W);
  apply_augment(p, seed, epoch, index, image, mask, H, W, out_image, out_mask);
}

}  // namespace crackseg::io
