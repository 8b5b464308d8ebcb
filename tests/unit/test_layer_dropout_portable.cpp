// ctest-link: crackseg_nn
// The oneDNN backend's dropout without AVX-512 (CRACKSEG_NO_AVX512=1, read once per process
// at the first forward): the portable Philox path must give the reference mask bit for bit,
// for nhwc tiles that start mid-block and for 2-D inputs.
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

Tensor dropout_out(const std::string& backend, const Dims& d, float p) {
  auto be = make_backend(backend);
  auto layer = be->make_layer(DropoutSpec{p}, "dec2.drop1");
  const std::vector<Dims> dims{d};
  layer->plan(dims);
  const std::vector<uint64_t> ids{3, 1000000007ull, 42};
  StepContext ctx;
  ctx.seed = 9, ctx.epoch = 4;
  ctx.sample_ids = std::span<const uint64_t>(ids).first(static_cast<std::size_t>(d[0]));
  return run_forward(*be, *layer, ctx, {random_tensor(d, 5, be->activation_format())});
}

TEST(DropoutPortable, ScalarPhiloxMatchesReferenceExactly) {
  ASSERT_EQ(0, setenv("CRACKSEG_NO_AVX512", "1", 1));
  for (const Dims& d : {Dims{2, 3, 7, 9}, Dims{3, 5, 11, 13}, Dims{3, 37}}) {
    const Tensor want = dropout_out("reference", d, 0.3f), got = dropout_out("onednn", d, 0.3f);
    std::string at;
    // same mask (a dropped element is 0 on one side and not on the other); kept values may
    // differ in the last bit (float vs double scaling)
    EXPECT_LE(tolerance_ratio(got, want, 0, 1e-6, &at), 1.0) << to_string(d) << " " << at;
  }
}

}  // namespace
