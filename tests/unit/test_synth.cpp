// ctest-labels: hdf5 unit
// ctest-link: crackseg_io
// Synthetic generator: deterministic per (seed, index), independent of thread count, binary
// masks that sit exactly on the dark crack pixels, crack fraction in the realistic 2-6% band.
#include <gtest/gtest.h>

#include <numeric>

#include "io/dataset/dataset.hpp"
#include "io/synth/synth.hpp"
#include "tests/support/paths.hpp"

using namespace crackseg;

namespace {
struct Img {
  std::vector<uint8_t> rgb, mask;
  int style;
};
Img make(uint64_t seed, uint64_t index, int h, int w) {
  Img i{std::vector<uint8_t>(size_t(h) * w * 3), std::vector<uint8_t>(size_t(h) * w), 0};
  i.style = io::synth_sample(seed, index, h, w, i.rgb.data(), i.mask.data());
  return i;
}
}  // namespace

TEST(Synth, SameSeedAndIndexGiveSameBytes) {
  for (uint64_t idx : {0u, 5u, 77u}) {
    const Img a = make(42, idx, 96, 80), b = make(42, idx, 96, 80);
    EXPECT_EQ(a.rgb, b.rgb);
    EXPECT_EQ(a.mask, b.mask);
  }
}

TEST(Synth, ImagesDifferBetweenIndicesAndSeeds) {
  const Img a = make(42, 0, 64, 64), b = make(42, 1, 64, 64), c = make(43, 0, 64, 64);
  EXPECT_NE(a.rgb, b.rgb);
  EXPECT_NE(a.rgb, c.rgb);
}

TEST(Synth, MasksAreBinaryAndMarkTheDarkCrackPixels) {
  const int n = 24, s = 400;
  uint64_t crack = 0;
  int with_cracks = 0;
  std::set<int> styles;
  for (int i = 0; i < n; ++i) {
    const Img im = make(126, static_cast<uint64_t>(i), s, s);
    styles.insert(im.style);
    double on = 0, off = 0;
    uint64_t n_on = 0;
    for (size_t p = 0; p < im.mask.size(); ++p) {
      ASSERT_LE(im.mask[p], 1) << "image " << i << " pixel " << p;
      const double lum = (im.rgb[3 * p] + im.rgb[3 * p + 1] + im.rgb[3 * p + 2]) / 3.0;
      (im.mask[p] ? on : off) += lum;
      n_on += im.mask[p];
    }
    crack += n_on;
    if (n_on == 0) continue;
    ++with_cracks;
    // Crack core is painted at 20-50% of the local surface brightness (plus grain).
    const double mean_on = on / double(n_on), mean_off = off / double(im.mask.size() - n_on);
    EXPECT_LT(mean_on, 0.65 * mean_off) << "image " << i;
  }
  EXPECT_GE(with_cracks, n - 3);
  EXPECT_EQ(styles.size(), 3u);
  const double fraction = double(crack) / (double(n) * s * s);
  EXPECT_GT(fraction, 0.02);
  EXPECT_LT(fraction, 0.06);
}

TEST(Synth, DatasetIsIndependentOfThreadCount) {
  test::TempDir dir;
  io::SynthOptions o;
  o.count = 10;
  o.size = 48;
  o.seed = 9;
  o.out = dir / "one.h5";
  o.threads = 1;
  const auto r1 = io::write_synth_dataset(o);
  o.out = dir / "two.h5";
  o.threads = 2;
  (void)io::write_synth_dataset(o);
  EXPECT_EQ(r1.count, 10u);
  io::DatasetFile a(dir / "one.h5"), b(dir / "two.h5");
  ASSERT_EQ(a.count(), 10u);
  ASSERT_EQ(b.count(), 10u);
  EXPECT_EQ(a.names(), b.names());
  EXPECT_EQ(a.sources(), b.sources());
  EXPECT_EQ(a.split("train"), b.split("train"));
  std::vector<uint8_t> ia(a.image_bytes()), ib(b.image_bytes()), ma(a.mask_bytes()), mb(b.mask_bytes());
  for (uint32_t i = 0; i < 10; ++i) {
    a.read_image(i, ia.data());
    b.read_image(i, ib.data());
    a.read_mask(i, ma.data());
    b.read_mask(i, mb.data());
    EXPECT_EQ(ia, ib);
    EXPECT_EQ(ma, mb);
    // The file holds exactly what synth_sample draws for (seed, index).
    const Img direct = make(9, i, 48, 48);
    EXPECT_EQ(ia, direct.rgb);
    EXPECT_EQ(ma, direct.mask);
    EXPECT_EQ(a.sources()[i], std::string("synth_") + io::kSynthStyles[direct.style]);
  }
  EXPECT_EQ(a.names()[3], "synth_000003");
}
