// ctest-link: crackseg_nn
// Weight and bias gradient of convolutions on our own AVX2 kernel (kernels/cpu/small_conv_wgrad.hpp;
// CPUs where oneDNN has no AVX-512 kernels). The kernel against a double-precision sum of the
// definition, the error bounded by the sum of |x * dy| per weight (a missing, doubled or
// misplaced tap, a lost row or block fails it at any magnitude): 1-32 input channels, 8-64
// output channels (every register blocking and channel slicing), kernels 1/3/5, strides 1/2/3,
// padding that drops taps, rows that do not fill the last block, blocks of more than the
// minimum rows and blocks of several images (both regimes checked to be covered); that
// it adds into dW and db (and leaves db alone when it is null); that the bits do not depend on
// the thread count. Then the convolution layer with oneDNN limited to AVX2: it says it took
// the kernel, and its gradients match the reference backend's, with and without bias, with a
// fused ReLU (whose d(pre-activation) the kernel reads), at 1 and 3 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/small_conv_wgrad.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::onednn;

namespace {

SmallWgradShape shape(int64_t N, int64_t I, int64_t H, int64_t W, int64_t O, int64_t K, int64_t S, int64_t P) {
  return {N, I, H, W, O, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1, K, K, S, P, P};
}

// A Kh x Kw kernel with padding top/bottom/left/right (the transposed convolutions' phases).
SmallWgradShape rect(int64_t N, int64_t I, int64_t H, int64_t W, int64_t O, int64_t Kh, int64_t Kw, int64_t S,
                     int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return {N, I, H, W, O, (H + pt + pb - Kh) / S + 1, (W + pl + pr - Kw) / S + 1, Kh, Kw, S, pt, pl};
}

struct Ref {
  std::vector<double> dw, db, bw, bb;  // sums and the bounds sum |terms|
};

Ref reference(const SmallWgradShape& s, const std::vector<float>& x, const std::vector<float>& dy) {
  Ref r;
  const std::size_t nw = static_cast<std::size_t>(s.O * s.I * s.Kh * s.Kw);
  r.dw.assign(nw, 0.0), r.bw.assign(nw, 0.0), r.db.assign(static_cast<std::size_t>(s.O), 0.0), r.bb = r.db;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.Ho; ++oh)
      for (int64_t ow = 0; ow < s.Wo; ++ow)
        for (int64_t o = 0; o < s.O; ++o) {
          const double g = dy[static_cast<std::size_t>(((n * s.Ho + oh) * s.Wo + ow) * s.O + o)];
          r.db[static_cast<std::size_t>(o)] += g, r.bb[static_cast<std::size_t>(o)] += std::abs(g);
          for (int64_t i = 0; i < s.I; ++i)
            for (int64_t kh = 0; kh < s.Kh; ++kh)
              for (int64_t kw = 0; kw < s.Kw; ++kw) {
                const int64_t ih = oh * s.S + kh - s.Ph, iw = ow * s.S + kw - s.Pw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                const double t = g * x[static_cast<std::size_t>(((n * s.H + ih) * s.W + iw) * s.I + i)];
                const auto k = static_cast<std::size_t>(((o * s.I + i) * s.Kh + kh) * s.Kw + kw);
                r.dw[k] += t, r.bw[k] += std::abs(t);
              }
        }
  return r;
}

std::vector<float> normal(std::size_t n, uint32_t seed) {
  std::mt19937 r(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& e : v) e = nd(r);
  return v;
}

struct Out {
  std::vector<float> dw, db;
};

Out run_kernel(const SmallWgradShape& s, const std::vector<float>& x, const std::vector<float>& dy, int threads,
               bool bias) {
  Out o;
  o.dw.assign(static_cast<std::size_t>(s.O * s.I * s.Kh * s.Kw), 0.5f);  // it must add into these
  o.db.assign(static_cast<std::size_t>(s.O), -0.25f);
  std::vector<float> scratch(small_conv_wgrad_scratch_floats(s, threads), std::nanf(""));
  small_conv_wgrad(s, x.data(), dy.data(), scratch.data(), o.dw.data(), bias ? o.db.data() : nullptr, threads);
  return o;
}

}  // namespace

TEST(SmallConvWgrad, MatchesTheDefinitionAndTheBitsDoNotFollowTheThreads) {
  if (!small_conv_wgrad_fits(3, 16, 3)) GTEST_SKIP() << "no AVX2 + FMA (or CRACKSEG_NO_AVX2=1): the layer keeps oneDNN";
  const SmallWgradShape shapes[] = {
      shape(4, 1, 31, 29, 16, 3, 2, 0),  // Spiral-Net's module entries (1 -> 16, stride 2)
      shape(2, 7, 17, 15, 16, 3, 2, 0),  // 63 taps + the bias tap: 64
      shape(3, 3, 13, 11, 16, 3, 1, 1),  // the U-Net's and the patch CNN's first layer
      shape(2, 3, 9, 10, 8, 3, 1, 1),    shape(2, 2, 9, 9, 24, 5, 1, 2), shape(1, 5, 7, 9, 32, 3, 3, 1),
      shape(3, 4, 6, 5, 48, 1, 1, 0),    shape(2, 6, 8, 7, 64, 3, 2, 1), shape(1, 1, 5, 5, 16, 3, 1, 2),
      shape(3, 16, 9, 9, 16, 3, 1, 1),    // the patch CNN's 16 -> 16
      shape(2, 32, 40, 40, 64, 3, 1, 1),  // blocks of 5 rows (partial budget), 4 channel slices
      shape(40, 32, 5, 5, 64, 3, 1, 1),   // blocks of 3 whole images, the last of 1
      shape(3, 16, 11, 13, 48, 3, 2, 1),  // 3 slices of 16 channels, stride 2
      shape(2, 9, 12, 10, 24, 3, 1, 1),   // 24 channels: one slice of 3 vectors
      shape(2, 12, 8, 8, 8, 3, 1, 0),     // 8 channels: one vector, 12 taps a group
      // Kh x Kw kernels with the padding different on each side (the slab's row and column
      // bounds): 2x2 padded 1 all round, 2x1 / 1x2 padded on one side only, a 3x2
      rect(2, 32, 9, 8, 16, 2, 2, 1, 1, 1, 1, 1), rect(2, 32, 9, 8, 16, 2, 1, 1, 1, 1, 0, 0),
      rect(3, 24, 7, 10, 32, 1, 2, 1, 0, 0, 0, 1), rect(2, 5, 11, 9, 16, 3, 2, 1, 2, 0, 0, 1),
  };
  bool longer_rows = false, several_images = false;
  for (const SmallWgradShape& s : shapes) {
    SCOPED_TRACE("I " + std::to_string(s.I) + " O " + std::to_string(s.O) + " K " + std::to_string(s.Kh) + "x" +
                 std::to_string(s.Kw) + " S " + std::to_string(s.S) + " P " + std::to_string(s.Ph) + "," +
                 std::to_string(s.Pw) + " rows " + std::to_string(s.N * s.Ho));
    ASSERT_TRUE(small_conv_wgrad_fits(s.I, s.O, s.Kh, s.Kw));
    const SmallWgradBlocks b = small_conv_wgrad_blocks(s);
    longer_rows |= b.M == 1 && b.R > 4 && b.R < s.Ho;
    several_images |= b.M > 1 && s.N % b.M != 0;
    const auto x = normal(static_cast<std::size_t>(s.N * s.H * s.W * s.I), 7);
    const auto dy = normal(static_cast<std::size_t>(s.N * s.Ho * s.Wo * s.O), 8);
    const Ref r = reference(s, x, dy);
    const Out one = run_kernel(s, x, dy, 1, true);
    for (std::size_t k = 0; k < one.dw.size(); ++k)
      ASSERT_LE(std::abs(one.dw[k] - (0.5 + r.dw[k])), 1e-5 * r.bw[k] + 1e-6) << "dw " << k;
    for (std::size_t o = 0; o < one.db.size(); ++o)
      ASSERT_LE(std::abs(one.db[o] - (-0.25 + r.db[o])), 1e-5 * r.bb[o] + 1e-6) << "db " << o;
    for (const int threads : {2, 3, 5}) {
      const Out t = run_kernel(s, x, dy, threads, true);
      EXPECT_EQ(std::memcmp(t.dw.data(), one.dw.data(), one.dw.size() * sizeof(float)), 0) << threads << " threads";
      EXPECT_EQ(std::memcmp(t.db.data(), one.db.data(), one.db.size() * sizeof(float)), 0) << threads << " threads";
    }
    const Out nb = run_kernel(s, x, dy, 2, false);
    EXPECT_EQ(std::memcmp(nb.dw.data(), one.dw.data(), one.dw.size() * sizeof(float)), 0) << "without bias";
    for (const float v : nb.db) EXPECT_EQ(v, -0.25f) << "db written without a bias";
  }
  EXPECT_TRUE(longer_rows) << "no shape had blocks of more than 4 rows of one image";
  EXPECT_TRUE(several_images) << "no shape had blocks of several images with a shorter last block";
}

TEST(SmallConvWgrad, TakesWhatItWasMeasuredToWin) {
  if (!small_conv_wgrad_fits(3, 16, 3)) GTEST_SKIP() << "no AVX2 + FMA";
  EXPECT_TRUE(small_conv_wgrad_fits(16, 16, 3));   // patch CNN conv1_2, U-Net enc1
  EXPECT_TRUE(small_conv_wgrad_fits(32, 64, 3));   // Spiral-Net enc3
  EXPECT_FALSE(small_conv_wgrad_fits(64, 64, 3));  // 577 x 64 taps x O: oneDNN's blocked kernel
  EXPECT_FALSE(small_conv_wgrad_fits(64, 128, 3));
  EXPECT_FALSE(small_conv_wgrad_fits(16, 40, 3));  // no slicing of 5 vectors
}

TEST(SmallConvWgrad, ConvLayerTakesItWhereOnednnHasNoAvx512) {
  if (!small_conv_wgrad_fits(3, 16, 3)) GTEST_SKIP() << "no AVX2 + FMA: the layer keeps oneDNN";
  ASSERT_EQ(0, setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1));  // before this process's first oneDNN call
  using namespace crackseg::test;
  struct C {
    Conv2dSpec spec;
    Dims x;
    bool relu;
  };
  const C cases[] = {
      {Conv2dSpec{3, 16, 3, 1, 1, 1}, {2, 3, 13, 11}, false},
      {Conv2dSpec{5, 16, 3, 2, 0, 1, false}, {3, 5, 15, 17}, false},
      {Conv2dSpec{1, 16, 3, 1, 1, 1}, {2, 1, 9, 9}, true},
      {Conv2dSpec{16, 32, 3, 1, 1, 1}, {3, 16, 9, 8}, true},
  };
  const int saved = omp_get_max_threads();
  for (const int threads : {1, 3})
    for (const C& c : cases) {
      omp_set_num_threads(threads);
      SCOPED_TRACE(std::to_string(c.spec.in_c) + " -> " + std::to_string(c.spec.out_c) + (c.relu ? " + relu" : "") +
                   ", " + std::to_string(threads) + " threads");
      const ConvLayerRun want = run_conv_layer("reference", c.spec, c.x, c.relu, 31);
      const ConvLayerRun got = run_conv_layer("onednn", c.spec, c.x, c.relu, 31);
      EXPECT_NE(got.summary.find("weight gradients of 1 convolutions on our own AVX2 kernel"),
                std::string::npos)
          << got.summary;
      ASSERT_EQ(want.grads.size(), got.grads.size());
      std::string at;
      for (std::size_t k = 0; k < want.grads.size(); ++k)
        EXPECT_LE(tolerance_ratio(got.grads[k], want.grads[k], 1e-4, 1e-3, &at), 1.0) << "grad " << k << " " << at;
    }
  omp_set_num_threads(saved);
}
