// ctest-link: crackseg_nn
// One dropout draw for every backend (src/core/dropout_rng.hpp, issue 14 item 1). The
// device kernel (kernels/cuda/dropout.cu) walks memory offsets of an nhwc tensor and calls
// dropout_logical_index + dropout_uniform; emulating that walk on the host must give the
// oneDNN kernel's mask bit for bit (nhwc and 2-D, tiles starting mid-block, sample ids
// above 2^32). The key/counter split itself is pinned: a salt in the counter (the old GPU
// keying) would keep only salt & 3, so layers whose salts agree mod 4 shared a mask.
#include <gtest/gtest.h>

#include "src/core/dropout_rng.hpp"
#include "src/layers/shapes.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

constexpr uint64_t kSeed = 9, kEpoch = 4;
const std::vector<uint64_t> kIds{3, 1000000007ull, (uint64_t{5} << 33) + 11};

// The CUDA kernel's loop, on the host: offset `off` of an (N, C, H, W) nhwc tensor (or (N, F)).
std::vector<uint8_t> device_walk_mask(const Dims& d, uint32_t salt, float p) {
  const int64_t n = d[0], c = d[1], h = d.size() == 4 ? d[2] : 1, w = d.size() == 4 ? d[3] : 1;
  const bool nhwc = d.size() == 4;
  const int64_t per = c * h * w;
  std::vector<uint8_t> keep(static_cast<std::size_t>(n * per));
  for (int64_t off = 0; off < n * per; ++off) {
    const int64_t item = off / per, r = off % per;
    const uint64_t i = dropout_logical_index(r, c, h, w, nhwc);
    keep[static_cast<std::size_t>(off)] =
        dropout_uniform(kSeed, salt, kEpoch, kIds[static_cast<std::size_t>(item)], i) < p ? 0 : 1;
  }
  return keep;
}

// oneDNN's dropout on all-ones input: kept elements are 1/(1-p) > 0, dropped ones 0.
std::vector<uint8_t> onednn_mask(const Dims& d, const std::string& name, float p) {
  auto be = make_backend("onednn");
  auto layer = be->make_layer(DropoutSpec{p}, name);
  layer->plan(std::vector<Dims>{d});
  StepContext ctx;
  ctx.seed = kSeed, ctx.epoch = kEpoch, ctx.training = true;
  ctx.sample_ids = std::span<const uint64_t>(kIds).first(static_cast<std::size_t>(d[0]));
  Tensor x = Tensor::empty(d, DType::f32, d.size() == 4 ? Format::nhwc : Format::plain);
  for (float& v : x.span<float>()) v = 1.0f;
  const Tensor y = run_forward(*be, *layer, ctx, {x});
  EXPECT_EQ(y.format(), x.format());
  std::vector<uint8_t> keep;
  for (float v : y.span<float>()) keep.push_back(v != 0.0f ? 1 : 0);
  return keep;
}

TEST(DropoutDraw, DeviceWalkGivesTheCpuKernelsMaskBitForBit) {
  // (test_layer_dropout_portable pins the portable Philox path against the reference)
  for (const Dims& d : {Dims{2, 3, 7, 9}, Dims{3, 5, 11, 13}, Dims{1, 16, 8, 8}, Dims{3, 37}}) {
    for (const std::string name : {"dec2.drop1", "enc.drop3"}) {
      const auto want = onednn_mask(d, name, 0.3f);
      const auto got = device_walk_mask(d, name_salt(name), 0.3f);
      ASSERT_EQ(got.size(), want.size());
      std::size_t diff = 0, dropped = 0;
      for (std::size_t k = 0; k < got.size(); ++k) diff += got[k] != want[k], dropped += want[k] == 0;
      EXPECT_EQ(diff, 0u) << to_string(d) << " " << name;
      EXPECT_GT(dropped, 0u) << to_string(d);
    }
  }
}

TEST(DropoutDraw, KeyAndCounterArePinned) {
  // The rule: key = seed ^ (salt << 32), counter = logical index.
  static_assert(dropout_draw(7, 0xabcdu, 12).key == (uint64_t{7} ^ (uint64_t{0xabcd} << 32)));
  static_assert(dropout_draw(7, 0xabcdu, 12).counter == 12);
  static_assert(dropout_key(7, 0xabcdu) == dropout_draw(7, 0xabcdu, 0).key);
  // nhwc offset -> logical (c, h, w) index; nchw / 2-D offsets are logical already.
  static_assert(dropout_logical_index(0, 3, 2, 2, true) == 0);
  static_assert(dropout_logical_index(1, 3, 2, 2, true) == 4);   // (c=1, hw=0)
  static_assert(dropout_logical_index(5, 3, 2, 2, true) == 9);   // (c=2, hw=1)
  static_assert(dropout_logical_index(5, 3, 2, 2, false) == 5);
  EXPECT_EQ(dropout_uniform(kSeed, 0x1234u, kEpoch, 77, 5),
            rng_uniform(kSeed ^ (uint64_t{0x1234} << 32), kEpoch, 77, Purpose::dropout, 5));
  // Salts equal mod 4 must not give the same mask (they did with the salt in the counter).
  const int64_t count = 4096;
  int64_t same = 0, old_same = 0;
  for (int64_t i = 0; i < count; ++i) {
    const auto u = static_cast<uint64_t>(i);
    same += dropout_drops(kSeed, 1, kEpoch, 3, u, 0.5f) == dropout_drops(kSeed, 5, kEpoch, 3, u, 0.5f);
    old_same += (rng_uniform(kSeed, kEpoch, 3, Purpose::dropout, (uint64_t{1} << 32) + u) < 0.5f) ==
                (rng_uniform(kSeed, kEpoch, 3, Purpose::dropout, (uint64_t{5} << 32) + u) < 0.5f);
  }
  EXPECT_EQ(old_same, count);  // why the salt left the counter
  EXPECT_LT(same, count * 6 / 10);
  EXPECT_GT(same, count * 4 / 10);
}

}  // namespace
