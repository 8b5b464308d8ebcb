// ctest-link: crackseg_io
// Augmentation: each geometric transform against an independent OpenCV/loop reference, mask
// binary and aligned with the image after random transforms, photometric effects, and
// determinism keyed by (seed, epoch, index) only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "io/augment/augment.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"

using namespace crackseg;
using namespace crackseg::io;

namespace {

struct Sample {
  int H = 0, W = 0;
  std::vector<uint8_t> image, mask;
};

// Image whose pixels are all distinct-ish (so a wrong mapping shows), mask random 0/1.
Sample textured(int H, int W, uint64_t key) {
  Sample s{H, W, std::vector<uint8_t>(static_cast<size_t>(H) * W * 3), std::vector<uint8_t>(static_cast<size_t>(H) * W)};
  SampleRng r(key, 0, 0, Purpose::synth);
  for (auto& v : s.image) v = static_cast<uint8_t>(r.next_u32());
  for (auto& v : s.mask) v = static_cast<uint8_t>(r.next_u32() & 1u);
  return s;
}

// Mask of random 6x6 blocks; the image's red channel is 255 on crack, 0 elsewhere, other
// channels carry unrelated texture. Alignment = red channel agrees with the mask.
Sample red_encodes_mask(int H, int W, uint64_t key) {
  Sample s = textured(H, W, key);
  SampleRng r(key, 1, 0, Purpose::synth);
  for (int by = 0; by < H; by += 6)
    for (int bx = 0; bx < W; bx += 6) {
      const uint8_t m = r.uniform() < 0.3f ? 1 : 0;
      for (int y = by; y < std::min(H, by + 6); ++y)
        for (int x = bx; x < std::min(W, bx + 6); ++x) {
          s.mask[static_cast<size_t>(y) * W + x] = m;
          s.image[(static_cast<size_t>(y) * W + x) * 3] = m ? 255 : 0;
        }
    }
  return s;
}

struct Out {
  std::vector<float> image;
  std::vector<uint8_t> mask;
};

Out run(const AugmentParams& p, const Sample& s, uint64_t seed = 1, uint64_t epoch = 0, uint64_t index = 0) {
  Out o{std::vector<float>(static_cast<size_t>(p.out_h) * p.out_w * 3), std::vector<uint8_t>(static_cast<size_t>(p.out_h) * p.out_w)};
  apply_augment(p, seed, epoch, index, s.image, s.mask, s.H, s.W, o.image, o.mask);
  return o;
}

Out run(const AugmentConfig& c, const Sample& s, uint64_t seed, uint64_t epoch, uint64_t index) {
  const int oh = augment_out_h(c, s.H), ow = augment_out_w(c, s.W);
  Out o{std::vector<float>(static_cast<size_t>(oh) * ow * 3), std::vector<uint8_t>(static_cast<size_t>(oh) * ow)};
  augment_sample(c, seed, epoch, index, s.image, s.mask, s.H, s.W, o.image, o.mask);
  return o;
}

AugmentParams identity(int H, int W) {
  AugmentParams p;
  p.out_h = H;
  p.out_w = W;
  return p;
}

// Expects out == source pixel (sy(y, x), sx(y, x)) / 255 exactly, and the mask likewise.
template <typename Map>
void expect_mapping(const Sample& s, const Out& o, int oh, int ow, Map map) {
  for (int y = 0; y < oh; ++y)
    for (int x = 0; x < ow; ++x) {
      const auto [sy, sx] = map(y, x);
      const size_t di = static_cast<size_t>(y) * ow + x, si = static_cast<size_t>(sy) * s.W + sx;
      ASSERT_EQ(o.mask[di], s.mask[si]) << "mask at (" << y << ", " << x << ")";
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(o.image[di * 3 + c], static_cast<float>(s.image[si * 3 + c]) / 255.0f)
            << "image at (" << y << ", " << x << ", " << c << ")";
    }
}

}  // namespace

TEST(Augment, IdentityIsExactCopyScaledBy255) {
  const Sample s = textured(17, 23, 5);
  const Out o = run(identity(17, 23), s);
  expect_mapping(s, o, 17, 23, [](int y, int x) { return std::pair{y, x}; });
}

TEST(Augment, HorizontalAndVerticalFlipsAreExact) {
  const Sample s = textured(17, 23, 6);
  AugmentParams p = identity(17, 23);
  p.hflip = true;
  expect_mapping(s, run(p, s), 17, 23, [](int y, int x) { return std::pair{y, 22 - x}; });
  p.hflip = false;
  p.vflip = true;
  expect_mapping(s, run(p, s), 17, 23, [](int y, int x) { return std::pair{16 - y, x}; });
  p.hflip = true;
  expect_mapping(s, run(p, s), 17, 23, [](int y, int x) { return std::pair{16 - y, 22 - x}; });
}

TEST(Augment, CropWindowIsExactSubImage) {
  const Sample s = textured(20, 30, 7);
  AugmentParams p = identity(20, 30);
  p.out_h = p.out_w = 8;
  p.crop_x = 19;
  p.crop_y = 5;
  expect_mapping(s, run(p, s), 8, 8, [](int y, int x) { return std::pair{y + 5, x + 19}; });
  p.hflip = true;  // crop is taken from the flipped canvas
  expect_mapping(s, run(p, s), 8, 8, [](int y, int x) { return std::pair{y + 5, 29 - (x + 19)}; });
}

TEST(Augment, Rotation90MatchesCvRotateCounterClockwise) {
  const Sample s = textured(21, 21, 8);
  AugmentParams p = identity(21, 21);
  p.angle_deg = 90.0;
  const Out o = run(p, s);
  const cv::Mat src(21, 21, CV_8UC3, const_cast<uint8_t*>(s.image.data()));
  const cv::Mat msrc(21, 21, CV_8UC1, const_cast<uint8_t*>(s.mask.data()));
  cv::Mat ref, mref;
  cv::rotate(src, ref, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::rotate(msrc, mref, cv::ROTATE_90_COUNTERCLOCKWISE);
  for (int y = 0; y < 21; ++y)
    for (int x = 0; x < 21; ++x) {
      ASSERT_EQ(o.mask[static_cast<size_t>(y) * 21 + x], mref.at<uint8_t>(y, x));
      for (int c = 0; c < 3; ++c)
        ASSERT_EQ(o.image[(static_cast<size_t>(y) * 21 + x) * 3 + c], ref.at<cv::Vec3b>(y, x)[c] / 255.0f);
    }
}

TEST(Augment, ZoomTwoAboutCentreDuplicatesPixelsAndMaskUsesNearest) {
  // Scale 2 on a 9x9 image (centre 4, 4): output (y, x) reads source (4 + (y-4)/2, 4 + (x-4)/2).
  const Sample s = textured(9, 9, 9);
  AugmentParams p = identity(9, 9);
  p.scale = 2.0;
  const Out o = run(p, s);
  for (int y = 0; y < 9; y += 2)
    for (int x = 0; x < 9; x += 2) {  // even offsets from the centre land on source pixels
      const int sy = 4 + (y - 4) / 2, sx = 4 + (x - 4) / 2;
      EXPECT_EQ(o.mask[static_cast<size_t>(y) * 9 + x], s.mask[static_cast<size_t>(sy) * 9 + sx]);
      EXPECT_EQ(o.image[(static_cast<size_t>(y) * 9 + x) * 3], s.image[(static_cast<size_t>(sy) * 9 + sx) * 3] / 255.0f);
    }
  for (uint8_t v : o.mask) EXPECT_LE(v, 1);
}

TEST(Augment, MaskBinaryAndAlignedAfterRandomGeometry) {
  // Photometric off so the red channel still encodes the mask. Bilinear weights the nearest
  // source pixel by (1-|dx|)(1-|dy|) >= 1/4, so where the nearest-neighbour mask says crack
  // the red channel is >= 255/4 and where it says background red is <= 3*255/4; wherever all
  // four neighbours agree (red exactly 0 or 1) the mask must match it exactly.
  AugmentConfig cfg{.enabled = true, .crop = 48, .brightness = 0, .contrast = 0, .noise_sigma = 0};
  const Sample s = red_encodes_mask(64, 80, 10);
  int pure = 0, total = 0, flips = 0, rotated = 0;
  for (uint64_t idx = 0; idx < 60; ++idx) {
    const AugmentParams p = draw_augment_params(cfg, 3, 1, idx, 64, 80);
    flips += p.hflip + p.vflip;
    rotated += std::abs(p.angle_deg) > 5.0;
    const Out o = run(cfg, s, 3, 1, idx);
    for (size_t i = 0; i < o.mask.size(); ++i) {
      ASSERT_LE(o.mask[i], 1) << "sample " << idx;
      const float red = o.image[i * 3];
      if (o.mask[i]) {
        ASSERT_GE(red, 0.25f - 2.0f / 255) << "sample " << idx << " pixel " << i;
      } else {
        ASSERT_LE(red, 0.75f + 2.0f / 255) << "sample " << idx << " pixel " << i;
      }
      if (red == 0.0f || red == 1.0f) {
        ++pure;
        ASSERT_EQ(o.mask[i], red == 1.0f ? 1 : 0) << "sample " << idx << " pixel " << i;
      }
      ++total;
    }
  }
  EXPECT_GT(flips, 30);    // the transforms were really exercised
  EXPECT_GT(rotated, 30);
  EXPECT_GT(pure, total / 2);
}

TEST(Augment, MaskIsNearestNeighbourOfTheDocumentedInverseMap) {
  // Independent reference for the whole geometric chain: output (u, v) reads source
  //   c + F * R(-angle) * ((u + crop_x, v + crop_y) - c) / scale,  R(-a) = [[cos, -sin], [sin, cos]],
  // rounded to the nearest pixel, reflected (BORDER_REFLECT_101) at the edges. OpenCV rounds
  // fixed-point coordinates, so pixels whose coordinate lies within 0.01 of a rounding tie
  // are skipped. An interpolating (non-nearest) mask warp disagrees on many pixels here.
  const Sample s = textured(40, 52, 18);  // random 0/1 mask: every pixel matters
  const AugmentConfig cfg{.crop = 32};
  auto reflect101 = [](int i, int n) { return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i); };
  int checked = 0;
  for (uint64_t idx = 0; idx < 20; ++idx) {
    const AugmentParams p = draw_augment_params(cfg, 21, 0, idx, 40, 52);
    const Out o = run(p, s, 21, 0, idx);
    const double cx = 51 * 0.5, cy = 39 * 0.5, th = p.angle_deg * M_PI / 180.0;
    const double fx = p.hflip ? -1 : 1, fy = p.vflip ? -1 : 1;
    for (int v = 0; v < 32; ++v)
      for (int u = 0; u < 32; ++u) {
        const double qx = u + p.crop_x - cx, qy = v + p.crop_y - cy;
        const double sx = cx + fx * (std::cos(th) * qx - std::sin(th) * qy) / p.scale;
        const double sy = cy + fy * (std::sin(th) * qx + std::cos(th) * qy) / p.scale;
        const double frx = sx - std::floor(sx), fry = sy - std::floor(sy);
        if (std::abs(frx - 0.5) < 0.01 || std::abs(fry - 0.5) < 0.01) continue;
        const int ix = reflect101(static_cast<int>(std::lround(sx)), 52);
        const int iy = reflect101(static_cast<int>(std::lround(sy)), 40);
        ASSERT_EQ(o.mask[static_cast<size_t>(v) * 32 + u], s.mask[static_cast<size_t>(iy) * 52 + ix])
            << "sample " << idx << " output (" << v << ", " << u << ") source (" << sy << ", " << sx << ")";
        ++checked;
      }
  }
  EXPECT_GT(checked, 20 * 32 * 32 * 9 / 10);
}

TEST(Augment, DrawsCoverTheConfiguredRanges) {
  const AugmentConfig cfg{.crop = 100};
  double amin = 1e9, amax = -1e9, smin = 1e9, smax = -1e9;
  int h = 0;
  for (uint64_t i = 0; i < 2000; ++i) {
    const AugmentParams p = draw_augment_params(cfg, 11, 2, i, 120, 150);
    amin = std::min(amin, p.angle_deg);
    amax = std::max(amax, p.angle_deg);
    smin = std::min(smin, p.scale);
    smax = std::max(smax, p.scale);
    h += p.hflip;
    ASSERT_GE(p.brightness, 0.8f);
    ASSERT_LE(p.brightness, 1.2f);
    ASSERT_GE(p.contrast, 0.8f);
    ASSERT_LE(p.contrast, 1.2f);
    ASSERT_LE(p.crop_x, 50);
    ASSERT_LE(p.crop_y, 20);
    ASSERT_EQ(p.out_h, 100);
  }
  EXPECT_GE(amin, -30.0);
  EXPECT_LE(amax, 30.0);
  EXPECT_LT(amin, -29.0);
  EXPECT_GT(amax, 29.0);
  EXPECT_GE(smin, 0.8);
  EXPECT_LE(smax, 1.2);
  EXPECT_GT(h, 900);
  EXPECT_LT(h, 1100);
}

TEST(Augment, PhotometricChangesImageOnlyNotMask) {
  const Sample s = red_encodes_mask(40, 40, 12);
  AugmentConfig geo{.crop = 32, .brightness = 0, .contrast = 0, .noise_sigma = 0};
  AugmentConfig all{.crop = 32};
  int changed = 0;
  for (uint64_t idx = 0; idx < 10; ++idx) {
    const Out a = run(geo, s, 4, 0, idx), b = run(all, s, 4, 0, idx);
    EXPECT_EQ(a.mask, b.mask) << "sample " << idx;  // same geometric draws, same mask
    for (size_t i = 0; i < a.image.size(); ++i) changed += a.image[i] != b.image[i];
    for (float v : b.image) {
      ASSERT_GE(v, 0.0f);
      ASSERT_LE(v, 1.0f);
    }
  }
  EXPECT_GT(changed, 9000);
}

TEST(Augment, BrightnessContrastFormula) {
  const Sample s = textured(8, 8, 13);
  AugmentParams p = identity(8, 8);
  p.brightness = 1.2f;
  p.contrast = 0.9f;
  const Out o = run(p, s);
  double sum = 0;
  for (uint8_t v : s.image) sum += v;
  const float mean = static_cast<float>(sum / static_cast<double>(s.image.size()));
  for (size_t i = 0; i < s.image.size(); ++i) {
    const float want = std::clamp(1.2f * 0.9f * s.image[i] + 1.2f * (1.0f - 0.9f) * mean, 0.0f, 255.0f) / 255.0f;
    ASSERT_EQ(o.image[i], want) << i;
  }
}

TEST(Augment, NoiseHasConfiguredSigma) {
  Sample s = textured(64, 64, 14);
  std::fill(s.image.begin(), s.image.end(), uint8_t{128});  // far from the clamp
  AugmentParams p = identity(64, 64);
  p.noise_sigma = 10.0f;
  const Out o = run(p, s, 1, 0, 77);
  double sum = 0, sum2 = 0, beyond2sigma = 0;
  for (float v : o.image) {
    const double d = v * 255.0 - 128.0;
    sum += d;
    sum2 += d * d;
    beyond2sigma += std::abs(d) > 20.0;
  }
  const double n = static_cast<double>(o.image.size());
  // Gaussian shape: P(|z| > 2) = 4.55%; 4 binomial standard errors at n = 12288 is 0.75%.
  EXPECT_NEAR(beyond2sigma / n, 0.0455, 0.0075);
  EXPECT_NEAR(sum / n, 0.0, 0.25);                         // 4 standard errors of 10/sqrt(12288)
  EXPECT_NEAR(std::sqrt(sum2 / n - (sum / n) * (sum / n)), 10.0, 0.3);
}

TEST(Augment, DeterministicPerKeyAndDifferentAcrossKeys) {
  const Sample s = textured(50, 60, 15);
  const AugmentConfig cfg{.crop = 40};
  const Out a = run(cfg, s, 126, 3, 1234), b = run(cfg, s, 126, 3, 1234);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.mask, b.mask);
  EXPECT_NE(a.image, run(cfg, s, 126, 3, 1235).image);
  EXPECT_NE(a.image, run(cfg, s, 126, 4, 1234).image);
  EXPECT_NE(a.image, run(cfg, s, 127, 3, 1234).image);
}

TEST(Augment, DisabledWithCropIsPlainCropAndWholeImageIsCopy) {
  const Sample s = textured(30, 30, 16);
  const AugmentConfig crop_only{.enabled = false, .crop = 10};
  const AugmentParams p = draw_augment_params(crop_only, 9, 0, 5, 30, 30);
  EXPECT_FALSE(p.hflip || p.vflip);
  EXPECT_EQ(p.angle_deg, 0.0);
  EXPECT_EQ(p.noise_sigma, 0.0f);
  expect_mapping(s, run(crop_only, s, 9, 0, 5), 10, 10,
                 [&](int y, int x) { return std::pair{y + p.crop_y, x + p.crop_x}; });
  const AugmentConfig off{.enabled = false};
  expect_mapping(s, run(off, s, 9, 0, 5), 30, 30, [](int y, int x) { return std::pair{y, x}; });
}

TEST(Augment, RejectsBadConfigAndSizes) {
  const Sample s = textured(10, 10, 17);
  EXPECT_THROW((void)draw_augment_params(AugmentConfig{.crop = 11}, 0, 0, 0, 10, 10), InputError);
  EXPECT_THROW((void)draw_augment_params(AugmentConfig{.scale_min = 0}, 0, 0, 0, 10, 10), InputError);
  std::vector<float> small(10);
  std::vector<uint8_t> m(100);
  EXPECT_THROW(apply_augment(identity(10, 10), 0, 0, 0, s.image, s.mask, 10, 10, small, m), Error);
}
