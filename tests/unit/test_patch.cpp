// ctest-labels: unit hdf5
// ctest-link: crackseg_io
// Patch CNN sampler: sample counts (all crack pixels + ratio x background, capped by the
// background available), determinism, patches and label windows against direct indexing
// with symmetric (reflect) padding, and enumeration through a real HDF5 dataset.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "io/dataset/dataset.hpp"
#include "io/dataset/writer.hpp"
#include "io/patch/patch.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "support/paths.hpp"

using namespace crackseg;
using namespace crackseg::io;

namespace {

struct Images {
  int H, W;
  std::vector<std::vector<uint8_t>> image, mask;
};

Images make_images(int n, int H, int W, float crack_p, uint64_t key) {
  Images s{H, W, {}, {}};
  for (int i = 0; i < n; ++i) {
    SampleRng r(key, 0, static_cast<uint64_t>(i), Purpose::synth);
    std::vector<uint8_t> img(static_cast<size_t>(H) * W * 3), m(static_cast<size_t>(H) * W);
    for (auto& v : img) v = static_cast<uint8_t>(r.next_u32());
    for (auto& v : m) v = r.uniform() < crack_p ? 1 : 0;
    s.image.push_back(std::move(img));
    s.mask.push_back(std::move(m));
  }
  return s;
}

PatchSampler::Loader memory_loader(const Images& s, int* loads = nullptr) {
  return [&s, loads](uint32_t i, uint8_t* img, uint8_t* m) {
    std::copy(s.image[i].begin(), s.image[i].end(), img);
    std::copy(s.mask[i].begin(), s.mask[i].end(), m);
    if (loads) ++*loads;
  };
}

// Symmetric padding ("cba|abc"): coordinate -1 reads 0, -2 reads 1, n reads n-1.
int reflect(int i, int n) {
  if (i < 0) return -i - 1;
  if (i >= n) return 2 * n - i - 1;
  return i;
}

}  // namespace

TEST(PatchSampler, CountsAreAllCrackPlusRatioTimesBackground) {
  const Images s = make_images(1, 30, 40, 0.05f, 1);
  const PatchConfig cfg{.ratio = 3.0};
  const auto samples = patch_samples_for_image(cfg, 126, 0, 7, s.mask[0], 30, 40);
  size_t crack = 0;
  for (uint8_t v : s.mask[0]) crack += v;
  ASSERT_GT(crack, 20u);
  ASSERT_EQ(samples.size(), crack * 4);
  std::set<std::pair<uint32_t, uint32_t>> seen;
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& p = samples[i];
    EXPECT_EQ(p.image, 7u);
    EXPECT_TRUE(seen.insert({p.y, p.x}).second) << "pixel chosen twice";
    const uint8_t m = s.mask[0][p.y * 40 + p.x];
    EXPECT_EQ(m, i < crack ? 1 : 0) << "crack pixels first, then background";
  }
}

TEST(PatchSampler, FewerBackgroundWhenImageLacksItAndNothingWithoutCracks) {
  const Images dense = make_images(1, 10, 10, 0.6f, 2);
  size_t crack = 0;
  for (uint8_t v : dense.mask[0]) crack += v;
  const auto all = patch_samples_for_image(PatchConfig{}, 1, 0, 0, dense.mask[0], 10, 10);
  EXPECT_EQ(all.size(), 100u);  // every crack pixel and all (fewer than 3x) background pixels
  const auto half = patch_samples_for_image(PatchConfig{.ratio = 0.5}, 1, 0, 0, dense.mask[0], 10, 10);
  EXPECT_EQ(half.size(), crack + static_cast<size_t>(std::llround(0.5 * static_cast<double>(crack))));
  const std::vector<uint8_t> empty(100, 0);
  EXPECT_TRUE(patch_samples_for_image(PatchConfig{}, 1, 0, 0, empty, 10, 10).empty());
}

TEST(PatchSampler, BackgroundChoiceKeyedBySeedEpochImage) {
  const Images s = make_images(1, 30, 30, 0.05f, 3);
  const auto a = patch_samples_for_image(PatchConfig{}, 5, 1, 9, s.mask[0], 30, 30);
  EXPECT_EQ(a, patch_samples_for_image(PatchConfig{}, 5, 1, 9, s.mask[0], 30, 30));
  auto b = patch_samples_for_image(PatchConfig{}, 5, 2, 9, s.mask[0], 30, 30);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_NE(a, b);  // other epoch, other background pixels
  auto c = patch_samples_for_image(PatchConfig{}, 5, 1, 10, s.mask[0], 30, 30);
  for (auto& p : c) p.image = 9;
  EXPECT_NE(a, c);  // other image index, other draw
}

TEST(PatchSampler, PatchesAndLabelWindowsMatchReflectPaddedSource) {
  const int H = 20, W = 24;
  const Images s = make_images(3, H, W, 0.2f, 4);
  // Fan et al.'s (2h+1)^2 patch, and the context patch of model.padding = "context"
  // (rows/cols centre - 19 .. centre + 16 for h=13).
  for (const bool context : {false, true}) {
  const PatchConfig cfg{.h = 13, .s = 2, .ratio = 3.0, .context = context};
  EXPECT_EQ(cfg.patch_side(), context ? 36 : 27);
  int loads = 0;
  PatchSampler sampler(cfg, memory_loader(s, &loads), H, W, 2);
  // Corners, edges and the interior of several images.
  const std::vector<PatchSample> batch = {{0, 0, 0}, {1, 19, 23}, {2, 5, 0}, {0, 10, 12}, {1, 0, 23}, {2, 19, 7}};
  const int side = cfg.patch_side(), nl = cfg.label_count();
  std::vector<float> imgs(batch.size() * side * side * 3), labels(batch.size() * nl);
  sampler.fill_batch(batch, imgs, labels);
  for (size_t n = 0; n < batch.size(); ++n) {
    const auto& b = batch[n];
    for (int dy = -cfg.before(); dy <= cfg.after(); ++dy)
      for (int dx = -cfg.before(); dx <= cfg.after(); ++dx)
        for (int c = 0; c < 3; ++c) {
          const int sy = reflect(static_cast<int>(b.y) + dy, H), sx = reflect(static_cast<int>(b.x) + dx, W);
          const float want = s.image[b.image][(static_cast<size_t>(sy) * W + sx) * 3 + c] / 255.0f;
          ASSERT_EQ(imgs[((n * side + (dy + cfg.before())) * side + (dx + cfg.before())) * 3 + c], want)
              << "sample " << n << " offset (" << dy << ", " << dx << ")";
        }
    for (int dy = -cfg.s; dy <= cfg.s; ++dy)
      for (int dx = -cfg.s; dx <= cfg.s; ++dx) {
        const int sy = reflect(static_cast<int>(b.y) + dy, H), sx = reflect(static_cast<int>(b.x) + dx, W);
        ASSERT_EQ(labels[n * nl + (dy + cfg.s) * 5 + (dx + cfg.s)], s.mask[b.image][static_cast<size_t>(sy) * W + sx]);
      }
    // The centre label is the sample pixel's own mask value.
    EXPECT_EQ(labels[n * nl + nl / 2], s.mask[b.image][b.y * W + b.x]);
  }
  EXPECT_LE(loads, 6);  // cache of 2 images: at most one load per sample here
  EXPECT_THROW(sampler.fill_batch(batch, std::span(imgs).first(10), labels), Error);
  const std::vector<PatchSample> outside = {{0, 20, 0}};
  std::vector<float> one(side * side * 3), one_l(nl);
  EXPECT_THROW(sampler.fill_batch(outside, one, one_l), Error);
  }
}

TEST(PatchSampler, CacheReadsEachImageOnceForAGroupedList) {
  const Images s = make_images(4, 16, 16, 0.1f, 5);
  int loads = 0;
  PatchSampler sampler(PatchConfig{.h = 3, .s = 1}, memory_loader(s, &loads), 16, 16, 1);
  std::vector<PatchSample> all;
  for (uint32_t i = 0; i < 4; ++i) {
    auto one = patch_samples_for_image(sampler.config(), 1, 0, i, s.mask[i], 16, 16);
    all.insert(all.end(), one.begin(), one.end());
  }
  std::vector<float> imgs(all.size() * 7 * 7 * 3), labels(all.size() * 9);
  sampler.fill_batch(all, imgs, labels);
  EXPECT_EQ(loads, 4);
  for (size_t n = 0; n < all.size(); ++n)  // label centre == own mask value
    ASSERT_EQ(labels[n * 9 + 4], s.mask[all[n].image][all[n].y * 16 + all[n].x]);
}

TEST(PatchSampler, EnumerateThroughDatasetFileMatchesPerImage) {
  test::TempDir dir;
  const Images s = make_images(5, 32, 32, 0.04f, 6);
  {
    DatasetWriter w(dir / "p.h5", 32, 32);
    for (int i = 0; i < 5; ++i) w.append(s.image[i].data(), s.mask[i].data(), "img" + std::to_string(i), "synth");
    (void)w.finish(SplitSpec{});
  }
  const DatasetFile file(dir / "p.h5");
  const std::vector<uint32_t> which = {4, 1, 3};
  const PatchConfig cfg{};
  const auto got = enumerate_patch_samples(cfg, 126, 2, file, which);
  std::vector<PatchSample> want;
  for (uint32_t i : which) {
    auto one = patch_samples_for_image(cfg, 126, 2, i, s.mask[i], 32, 32);
    want.insert(want.end(), one.begin(), one.end());
  }
  EXPECT_EQ(got, want);
  PatchSampler sampler(cfg, PatchSampler::file_loader(file), 32, 32);
  std::vector<float> a(27 * 27 * 3), al(25);
  const std::vector<PatchSample> one = {got.back()};
  sampler.fill_batch(one, a, al);
  PatchSampler mem(cfg, memory_loader(s), 32, 32);
  std::vector<float> b(27 * 27 * 3), bl(25);
  mem.fill_batch(one, b, bl);
  EXPECT_EQ(a, b);
  EXPECT_EQ(al, bl);
}

TEST(PatchSampler, RejectsBadConfig) {
  EXPECT_THROW(PatchSampler(PatchConfig{.h = 2, .s = 3}, nullptr, 10, 10), InputError);
  EXPECT_THROW(PatchSampler(PatchConfig{.h = 13}, nullptr, 10, 10), InputError);
}
