// ctest-link: crackseg_base
// Counter-based RNG: known-answer test against the Philox4x32-10 reference vectors
// (Random123 kat_vectors), stream independence and permutation properties.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "src/core/rng.hpp"

using namespace crackseg;

TEST(Philox, KnownAnswerVectors) {
  // Random123 kat_vectors: philox4x32 10 rounds.
  auto a = philox4x32({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(a[0], 0x6627e8d5u);
  EXPECT_EQ(a[1], 0xe169c58du);
  EXPECT_EQ(a[2], 0xbc57ac4cu);
  EXPECT_EQ(a[3], 0x9b00dbd8u);
  auto b = philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(b[0], 0x408f276du);
  EXPECT_EQ(b[1], 0x41c83b0eu);
  EXPECT_EQ(b[2], 0xa20bc7c6u);
  EXPECT_EQ(b[3], 0x6d5451fdu);
}

TEST(SampleRng, SameKeySameStreamDifferentKeyDifferentStream) {
  SampleRng a(126, 3, 17, Purpose::crop), b(126, 3, 17, Purpose::crop);
  SampleRng c(126, 3, 17, Purpose::augment), d(126, 3, 18, Purpose::crop), e(126, 4, 17, Purpose::crop);
  int diff_c = 0, diff_d = 0, diff_e = 0;
  for (int i = 0; i < 64; ++i) {
    const uint32_t x = a.next_u32();
    EXPECT_EQ(x, b.next_u32());
    diff_c += x != c.next_u32();
    diff_d += x != d.next_u32();
    diff_e += x != e.next_u32();
  }
  EXPECT_GT(diff_c, 60);
  EXPECT_GT(diff_d, 60);
  EXPECT_GT(diff_e, 60);
}

TEST(SampleRng, StatelessWordMatchesStream) {
  SampleRng a(7, 1, 99, Purpose::dropout);
  for (uint64_t i = 0; i < 40; ++i) EXPECT_EQ(a.next_u32(), rng_word(7, 1, 99, Purpose::dropout, i));
}

TEST(SampleRng, UniformMomentsAndRange) {
  SampleRng r(1, 0, 0, Purpose::noise);
  double sum = 0, sum2 = 0, nsum = 0, nsum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    sum2 += u * u;
    const float g = r.normal();
    nsum += g;
    nsum2 += g * g;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
  EXPECT_NEAR(sum2 / n - (sum / n) * (sum / n), 1.0 / 12.0, 0.002);
  EXPECT_NEAR(nsum / n, 0.0, 0.01);
  EXPECT_NEAR(nsum2 / n, 1.0, 0.02);
}

TEST(EpochPermutation, IsAPermutationDependingOnSeedAndEpochOnly) {
  auto p = epoch_permutation(126, 2, 1000);
  auto q = epoch_permutation(126, 2, 1000);
  EXPECT_EQ(p, q);
  auto sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_NE(p, epoch_permutation(126, 3, 1000));
  EXPECT_NE(p, epoch_permutation(127, 2, 1000));
}
