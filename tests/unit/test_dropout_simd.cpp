// ctest-link: crackseg_nn
// The dropout mask loops (kernels/cpu/dropout_simd.hpp): every variant this CPU can run
// (AVX-512, AVX2) must give the scalar variant's bits, for Philox counters and keys across
// their range, thresholds at both ends, and for applying rows: 1 channel (the pixel-register
// path) and channel counts around every register width (8, 16 and the tails), tiles of any
// length below 64, in place and not. On a CPU with AVX2 the AVX2 variant must be among them
// (so this test cannot pass by comparing the scalar code with itself there).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include "kernels/cpu/dropout_simd.hpp"

using namespace crackseg::onednn;

TEST(DropoutSimd, EveryVariantGivesTheScalarBits) {
  const std::vector<dropout_simd::Variant> vs = dropout_simd::runnable();
  ASSERT_FALSE(vs.empty());
  EXPECT_EQ(std::string_view(vs.back().isa), "scalar");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2")) {
    bool has = false;
    for (const auto& v : vs) has = has || std::string_view(v.isa) == "avx2";
    EXPECT_TRUE(has) << "the AVX2 variant is not offered on an AVX2 CPU";
  }
  if (vs.size() == 1) GTEST_SKIP() << "only the scalar variant runs here";
  const dropout_simd::Variant& ref = vs.back();
  std::mt19937 g(11);
  const uint32_t thresholds[] = {0u, 1u, 5033165u /* p = 0.3 */, 8388608u, 16777215u, 16777216u /* p = 1 */};
  for (const auto& v : vs) {
    SCOPED_TRACE(v.isa);
    for (int trial = 0; trial < 3000; ++trial) {
      const uint32_t c0 = g(), c1 = g(), c2 = g(), k0 = g(), k1 = g();
      const uint32_t j0 = trial % 7 == 0 ? 0xFFFFFFF8u : g();  // counters wrapping inside the 16 blocks
      const uint32_t ti = thresholds[trial % std::size(thresholds)];
      ASSERT_EQ(v.keep_bits(c0, c1, c2, j0, k0, k1, ti), ref.keep_bits(c0, c1, c2, j0, k0, k1, ti))
          << "trial " << trial << " ti " << ti;
    }
    std::normal_distribution<float> nd(0.0f, 2.0f);
    for (const int64_t C : {1, 2, 3, 7, 8, 9, 15, 16, 17, 24, 33}) {
      for (const int64_t npix : {1, 7, 8, 9, 15, 16, 17, 31, 60, 63}) {
        std::vector<uint64_t> rows(static_cast<std::size_t>(C));
        for (auto& r : rows) r = (uint64_t{g()} << 32) | g();
        std::vector<float> x(static_cast<std::size_t>(npix * C));
        for (auto& e : x) e = nd(g);
        x[0] = -0.0f;  // a kept -0 stays -0 * scale, a dropped element is +0
        std::vector<float> want(x.size() + 8, 7.0f), got(x.size() + 8, 7.0f);  // guard floats after the end
        ref.apply_rows(rows.data(), x.data(), want.data(), npix, C, 1.25f);
        v.apply_rows(rows.data(), x.data(), got.data(), npix, C, 1.25f);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << "C " << C << " npix " << npix;
        std::vector<float> inplace = x;
        v.apply_rows(rows.data(), inplace.data(), inplace.data(), npix, C, 1.25f);
        ASSERT_EQ(std::memcmp(inplace.data(), want.data(), x.size() * sizeof(float)), 0) << "in place, C " << C;
      }
    }
  }
}
