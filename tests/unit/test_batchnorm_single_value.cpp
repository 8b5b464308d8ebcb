// ctest-link: crackseg_nn
// Batchnorm with one value per channel (N*H*W = 1: a depth-7 Spiral-Net / hourglass at 255
// with micro_batch 1), issue 14 item 2. The unbiased variance count / (count - 1) * biased
// is undefined there; every backend takes the biased one (0) instead, so the running
// variance decays towards 0 and stays finite (cuDNN's own update would make it NaN; the
// CUDA backend applies this rule itself, tests/cuda/test_cuda_preflight.cpp). Checked on
// the reference and oneDNN backends: the running buffers after one training forward, and
// the deferred batch statistics the trainer gathers.
#include <gtest/gtest.h>

#include <cmath>

#include "src/layers/running_stats.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

constexpr int64_t kC = 5;
constexpr float kMomentum = 0.1f;

struct Running {
  std::vector<float> mean, var;
};

Running after_one_forward(const std::string& backend, const Dims& d, bool defer, std::vector<float>* stats) {
  auto be = make_backend(backend);
  auto layer = be->make_layer(BatchNorm2dSpec{kC, 1e-5f, kMomentum}, "bn");
  layer->set_defer_running_stats(defer);
  layer->plan(std::vector<Dims>{d});
  layer->params_changed();
  StepContext ctx;
  ctx.training = true;
  (void)run_forward(*be, *layer, ctx, {random_tensor(d, 3, be->activation_format())});
  if (stats) {
    stats->assign(layer->batch_stats_size(), NAN);
    layer->read_batch_stats(*stats);
  }
  Running r;
  const auto bufs = layer->buffers();
  EXPECT_EQ(bufs.size(), 2u);
  r.mean.assign(bufs[0].second->span<float>().begin(), bufs[0].second->span<float>().end());
  r.var.assign(bufs[1].second->span<float>().begin(), bufs[1].second->span<float>().end());
  return r;
}

TEST(BatchnormSingleValue, TheRuleItself) {
  EXPECT_EQ(unbiased_variance(0.0, 1.0), 0.0);
  EXPECT_EQ(unbiased_variance(2.0, 1.0), 2.0);  // biased when count <= 1
  EXPECT_EQ(unbiased_variance(2.0, 4.0), 2.0 * 4.0 / 3.0);
  EXPECT_EQ(unbiased_variance(1.0, 1.0), 1.0);  // the factor the CUDA backend uses: 1 here
  EXPECT_EQ(unbiased_variance(1.0, 2.0), 2.0);
}

TEST(BatchnormSingleValue, RunningVarianceStaysFiniteOnTheCpuBackends) {
  for (const std::string b : {"reference", "onednn"}) {
    SCOPED_TRACE(b);
    std::vector<float> stats;
    const Running r = after_one_forward(b, {1, kC, 1, 1}, false, &stats);
    ASSERT_EQ(r.var.size(), static_cast<std::size_t>(kC));
    for (int64_t c = 0; c < kC; ++c) {
      const auto k = static_cast<std::size_t>(c);
      EXPECT_TRUE(std::isfinite(r.var[k]) && std::isfinite(r.mean[k])) << c;
      // (1 - m) * 1 + m * 0, rounded once from double
      EXPECT_EQ(r.var[k], static_cast<float>((1.0 - static_cast<double>(kMomentum)) * 1.0)) << c;
      EXPECT_EQ(stats[kC + k], 0.0f) << "batch variance of one value";
    }
  }
}

TEST(BatchnormSingleValue, DeferredStatisticsFollowTheSameRule) {
  for (const std::string b : {"reference", "onednn"}) {
    SCOPED_TRACE(b);
    std::vector<float> stats;
    const Running r = after_one_forward(b, {1, kC, 1, 1}, true, &stats);
    for (std::size_t k = 0; k < static_cast<std::size_t>(kC); ++k) {
      EXPECT_EQ(r.var[k], 1.0f) << "deferred: buffers untouched";
      EXPECT_EQ(stats[static_cast<std::size_t>(kC) + k], 0.0f);
    }
  }
}

TEST(BatchnormSingleValue, TwoValuesAreUnbiased) {
  // Control: with N*H*W = 2 the unbiased variance (x0 - x1)^2 / 2 is used on both backends.
  for (const std::string b : {"reference", "onednn"}) {
    SCOPED_TRACE(b);
    std::vector<float> stats;
    (void)after_one_forward(b, {2, kC, 1, 1}, true, &stats);
    const Tensor x = random_tensor({2, kC, 1, 1}, 3, Format::nchw);
    for (int64_t c = 0; c < kC; ++c) {
      const double x0 = x.span<float>()[static_cast<std::size_t>(c)], x1 = x.span<float>()[static_cast<std::size_t>(kC + c)];
      EXPECT_NEAR(stats[static_cast<std::size_t>(kC + c)], (x0 - x1) * (x0 - x1) / 2.0, 1e-5) << c;
    }
  }
}

}  // namespace
