// ctest-link: crackseg_nn
// The few-input-channel convolution input gradient (kernels/cpu/small_conv_dgrad.hpp) against
// its exact definition: every dx element is 0 + the tap values in (kh, kw) order, each tap
// value the FMA chain over the output channels o in order, from 0. So the kernel must give
// these bits exactly, whichever instruction set runs it (AVX-512 or AVX2: each T value is
// the same chain) and for any thread count; a lost or doubled tap, a wrong index, a skipped
// row block or halo row fails it. Shapes: 1-7 input channels, 1-4 tap registers, the pixel
// groups of either ISA and their tails, strides 1-3, padding, several row blocks per image.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/small_conv_dgrad.hpp"

using namespace crackseg;
using namespace crackseg::onednn;

namespace {

std::vector<float> randoms(std::size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(g);
  return v;
}

// dx (N, H, W, I) nhwc by the definition; W (O, I, K, K), dy (N, Ho, Wo, O) nhwc.
std::vector<float> exact(const SmallConvShape& s, const std::vector<float>& w, const std::vector<float>& dy) {
  std::vector<float> dx(static_cast<std::size_t>(s.N * s.H * s.W * s.I));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t x = 0; x < s.W; ++x)
        for (int64_t i = 0; i < s.I; ++i) {
          float acc = 0.0f;
          for (int64_t kh = 0; kh < s.K; ++kh) {
            const int64_t t = h + s.P - kh;
            if (t < 0 || t % s.S != 0 || t / s.S >= s.Ho) continue;
            for (int64_t kw = 0; kw < s.K; ++kw) {
              const int64_t u = x + s.P - kw;
              if (u < 0 || u % s.S != 0 || u / s.S >= s.Wo) continue;
              const float* d = dy.data() + ((n * s.Ho + t / s.S) * s.Wo + u / s.S) * s.O;
              float tap = 0.0f;
              for (int64_t o = 0; o < s.O; ++o) tap = std::fma(d[o], w[static_cast<std::size_t>(((o * s.I + i) * s.K + kh) * s.K + kw)], tap);
              acc += tap;
            }
          }
          dx[static_cast<std::size_t>(((n * s.H + h) * s.W + x) * s.I + i)] = acc;
        }
  return dx;
}

SmallConvShape shape(int64_t N, int64_t I, int64_t H, int64_t W, int64_t O, int64_t K, int64_t S, int64_t P) {
  return {N, I, H, W, O, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1, K, S, P};
}

}  // namespace

TEST(SmallConvDgrad, GivesTheExactFmaChainBitsOnThisIsaForAnyThreadCount) {
  if (!small_conv_dgrad_fits(3, 3)) GTEST_SKIP() << "neither AVX-512 nor AVX2 + FMA here: oneDNN's path runs instead";
  const SmallConvShape shapes[] = {
      shape(2, 1, 37, 21, 16, 3, 2, 0),   // Spiral-Net's module inputs: 1 channel, 1 register
      shape(2, 6, 75, 19, 16, 3, 2, 1),   // 54 taps: 4 registers, several row blocks
      shape(3, 5, 40, 13, 24, 3, 1, 1),   // stride 1, 45 taps: 3 registers
      shape(1, 7, 23, 11, 17, 3, 2, 0),   // 63 taps, odd output channel count
      shape(2, 2, 33, 22, 16, 4, 3, 1),   // K 4 stride 3: pixels no tap reaches
      shape(2, 3, 18, 17, 20, 2, 2, 0),   // K 2, 12 taps
      shape(1, 4, 9, 5, 16, 3, 1, 0),     // widths below every pixel group (tails only)
      shape(2, 1, 20, 19, 16, 8, 2, 3),   // K 8, 64 taps: the gather's reads run to T's end
      shape(1, 4, 15, 14, 16, 4, 2, 1),   // K 4, 64 taps of 4 channels
  };
  const int saved = omp_get_max_threads();
  for (const SmallConvShape& s : shapes) {
    const std::vector<float> w = randoms(static_cast<std::size_t>(s.O * s.I * s.K * s.K), 7);
    const std::vector<float> dy = randoms(static_cast<std::size_t>(s.N * s.Ho * s.Wo * s.O), 8);
    const std::vector<float> want = exact(s, w, dy);
    for (const int threads : {1, 3}) {
      omp_set_num_threads(threads);
      SmallConvDgrad k(s);
      k.set_weights(w.data());
      std::vector<float> scratch(k.scratch_bytes() / sizeof(float) + 1);
      std::vector<float> dx(want.size(), std::nanf(""));  // every element must be written
      k.run(dy.data(), dx.data(), scratch.data());
      for (std::size_t e = 0; e < want.size(); ++e)
        ASSERT_EQ(std::memcmp(&dx[e], &want[e], sizeof(float)), 0)
            << "I " << s.I << " K " << s.K << " S " << s.S << " P " << s.P << " threads " << threads << " element " << e
            << ": " << dx[e] << " vs " << want[e];
    }
  }
  omp_set_num_threads(saved);
}

// Where the CPU has AVX2, the kernel is used (not only with AVX-512): a CPU like the AMD Zen 3
// CI machines must not fall back to oneDNN's 16-channel-padded path.
TEST(SmallConvDgrad, RunsWithAvx2AloneToo) {
  if (!avx2_enabled()) GTEST_SKIP() << "no AVX2 + FMA here";
  EXPECT_TRUE(small_conv_dgrad_fits(1, 3));
  EXPECT_TRUE(small_conv_dgrad_fits(7, 3));
  EXPECT_FALSE(small_conv_dgrad_fits(8, 3));
  EXPECT_FALSE(small_conv_dgrad_fits(3, 5));  // 75 taps
}
