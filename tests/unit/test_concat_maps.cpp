// ctest-link: crackseg_nn
// The AVX-512 concat of 1-channel maps (kernels/cpu/concat_maps.hpp) against its definition,
// bit for bit: every map count 1..16, pixel ranges that start anywhere and end in a tail of
// 0-15 pixels, forward (maps -> whole) and backward (whole -> maps); every element outside
// the range untouched; and the bf16 form against to_bf16.hpp's rounding. Values with distinct bits per (map, pixel), so a lane or map swapped by
// the register transpose fails.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/concat_maps.hpp"
#include "kernels/cpu/to_bf16.hpp"

using namespace crackseg::onednn;

namespace {
float value(int64_t k, int64_t p) { return static_cast<float>(k * 1000 + p) + 0.25f; }
}  // namespace

TEST(ConcatMaps, MapsToWholeAndBackBitForBit) {
  if (!concat_maps_available()) GTEST_SKIP() << "no AVX-512 here (or CRACKSEG_NO_AVX512=1): concat.cpp's loop runs";
  constexpr int64_t P = 90;
  const int64_t ranges[][2] = {{0, 90}, {0, 16}, {3, 19}, {5, 50}, {17, 17}, {31, 46}, {0, 15}, {64, 90}};
  for (int64_t K = 1; K <= kMapsMax; ++K)
    for (const auto& r : ranges) {
      SCOPED_TRACE("K " + std::to_string(K) + " pixels [" + std::to_string(r[0]) + ", " + std::to_string(r[1]) + ")");
      std::vector<std::vector<float>> maps(static_cast<std::size_t>(K), std::vector<float>(P));
      std::vector<const float*> in;
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t p = 0; p < P; ++p) maps[k][p] = value(k, p);
        in.push_back(maps[k].data());
      }
      std::vector<float> whole(static_cast<std::size_t>(P * K), -7.0f);
      maps_to_whole(whole.data(), in.data(), K, r[0], r[1]);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t k = 0; k < K; ++k) {
          const float want = p >= r[0] && p < r[1] ? value(k, p) : -7.0f;
          ASSERT_EQ(std::memcmp(&whole[p * K + k], &want, sizeof(float)), 0) << "whole at pixel " << p << " map " << k;
        }
      // backward: the whole tensor's values back into fresh maps
      for (int64_t p = 0; p < P; ++p)
        for (int64_t k = 0; k < K; ++k) whole[p * K + k] = value(k, p) * -2.0f;
      std::vector<std::vector<float>> back(static_cast<std::size_t>(K), std::vector<float>(P, -7.0f));
      std::vector<float*> out;
      for (auto& b : back) out.push_back(b.data());
      whole_to_maps(whole.data(), out.data(), K, r[0], r[1]);
      for (int64_t k = 0; k < K; ++k)
        for (int64_t p = 0; p < P; ++p) {
          const float want = p >= r[0] && p < r[1] ? value(k, p) * -2.0f : -7.0f;
          ASSERT_EQ(std::memcmp(&back[k][p], &want, sizeof(float)), 0) << "map " << k << " pixel " << p;
        }
    }
}

// The bf16 form (a bf16 concat read only by bf16 convolutions): each value rounded exactly as
// to_bf16.hpp rounds it (the bits the reading convolution would have made itself).
TEST(ConcatMaps, MapsToWholeBf16RoundsLikeToBf16) {
  if (!concat_maps_available() || !avx512bf16_available()) GTEST_SKIP() << "no AVX512-BF16 here";
  constexpr int64_t P = 75;
  std::mt19937 g(3);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int64_t ranges[][2] = {{0, 75}, {5, 21}, {16, 75}, {0, 9}};
  for (int64_t K = 1; K <= kMapsMax; ++K)
    for (const auto& r : ranges) {
      SCOPED_TRACE("K " + std::to_string(K) + " pixels [" + std::to_string(r[0]) + ", " + std::to_string(r[1]) + ")");
      std::vector<std::vector<float>> maps(static_cast<std::size_t>(K), std::vector<float>(P));
      std::vector<const float*> in;
      for (auto& m : maps) {
        for (float& v : m) v = nd(g);  // full mantissas: every value rounds
        in.push_back(m.data());
      }
      std::vector<uint16_t> whole(static_cast<std::size_t>(P * K), 0xABCD);
      maps_to_whole_bf16(whole.data(), in.data(), K, r[0], r[1]);
      for (int64_t p = 0; p < P; ++p)
        for (int64_t k = 0; k < K; ++k) {
          uint16_t want = 0xABCD;
          if (p >= r[0] && p < r[1]) f32_to_bf16_serial(&maps[k][p], &want, 1);
          ASSERT_EQ(whole[p * K + k], want) << "pixel " << p << " map " << k;
        }
    }
}
