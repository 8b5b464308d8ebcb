// ctest-link: crackseg_nn
// The oneDNN backend's dropout without AVX2 or AVX-512 (CRACKSEG_NO_AVX2=1, read once per process
// at the first forward): the portable Philox path and the portable bit-packed mask must give
// the reference mask bit for bit, forward and backward, for nhwc tiles that start mid-block,
// tiles whose length is not a multiple of 64 bits, and 2-D inputs. The mask is one bit per
// element (plus the per-tile word padding), not a byte.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string_view>

#include "kernels/cpu/dropout_simd.hpp"
#include "src/graph/backend.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

struct FwdBwd {
  Tensor y, dx;
  uint64_t plan_bytes = 0;
};

FwdBwd dropout_run(const std::string& backend, const Dims& d, float p) {
  auto be = make_backend(backend);
  auto layer = be->make_layer(DropoutSpec{p}, "dec2.drop1");
  const std::vector<Dims> dims{d};
  const uint64_t before = nn_counters().bytes_allocated.load();
  layer->plan(dims);
  FwdBwd r;
  r.plan_bytes = nn_counters().bytes_allocated.load() - before;
  const std::vector<uint64_t> ids{3, 1000000007ull, 42};
  StepContext ctx;
  ctx.seed = 9, ctx.epoch = 4;
  ctx.sample_ids = std::span<const uint64_t>(ids).first(static_cast<std::size_t>(d[0]));
  const Format f = d.size() == 4 ? be->activation_format() : Format::plain;
  const Tensor x = random_tensor(d, 5, f);
  r.y = run_forward(*be, *layer, ctx, {x});
  const Tensor dy = random_tensor(d, 6, f);
  r.dx = Tensor::empty(d, DType::f32, f);
  Tensor* din = &r.dx;
  const Tensor* in = &x;
  layer->backward(ctx, std::span<const Tensor* const>(&in, 1), r.y, dy, std::span<Tensor* const>(&din, 1));
  return r;
}

Tensor dropout_out(const std::string& backend, const Dims& d, float p) { return dropout_run(backend, d, p).y; }

TEST(DropoutPortable, ScalarPhiloxMatchesReferenceExactly) {
  ASSERT_EQ(0, setenv("CRACKSEG_NO_AVX2", "1", 1));
  // the switch must reach the choice (every variant gives the same bits, so the comparison
  // below alone could not tell)
  ASSERT_EQ(std::string_view(onednn::dropout_simd::chosen().isa), "scalar");
  for (const Dims& d : {Dims{2, 3, 7, 9}, Dims{3, 5, 11, 13}, Dims{3, 37}}) {
    const Tensor want = dropout_out("reference", d, 0.3f), got = dropout_out("onednn", d, 0.3f);
    std::string at;
    // same mask (a dropped element is 0 on one side and not on the other); kept values may
    // differ in the last bit (float vs double scaling)
    EXPECT_LE(tolerance_ratio(got, want, 0, 1e-6, &at), 1.0) << to_string(d) << " " << at;
  }
}

TEST(DropoutPortable, BackwardUsesTheForwardMaskAndTheMaskIsBits) {
  ASSERT_EQ(0, setenv("CRACKSEG_NO_AVX2", "1", 1));
  // C = 3, 5, 16, 1 channels: 60-pixel tiles of 180, 300, 960, 60 elements (tails of 52, 44, 0, 60 bits)
  for (const Dims& d : {Dims{2, 3, 7, 9}, Dims{3, 5, 11, 13}, Dims{2, 16, 9, 8}, Dims{2, 1, 13, 17}, Dims{3, 37}}) {
    const FwdBwd want = dropout_run("reference", d, 0.3f), got = dropout_run("onednn", d, 0.3f);
    std::string at;
    EXPECT_LE(tolerance_ratio(got.dx, want.dx, 0, 1e-6, &at), 1.0) << to_string(d) << " " << at;
    int64_t zeros = 0, kept = 0;
    for (float v : got.dx.span<float>()) (v == 0.0f ? zeros : kept) += 1;
    EXPECT_GT(zeros, 0) << to_string(d);
    EXPECT_GT(kept, 0) << to_string(d);
    // one bit per element, plus per item one padding word per 60-pixel tile and the unused
    // part of its last (short) tile; a byte mask would be n bytes
    const int64_t n = numel(d), items = d[0], hw = d.size() == 4 ? d[2] * d[3] : d[1], c = d.size() == 4 ? d[1] : 1;
    const int64_t pad = 8 * ((hw + 59) / 60) + 8 * ((60 * c + 63) / 64);
    EXPECT_LE(got.plan_bytes, static_cast<uint64_t>(n / 8 + items * pad)) << to_string(d);
  }
}

}  // namespace
