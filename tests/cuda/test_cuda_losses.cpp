// ctest-labels: cuda
// ctest-link: crackseg_cuda crackseg_train
// Device losses against the CPU losses of src/losses (value, extras and dlogits), the device
// optimizer against src/optim's, and metric counts against a host count. Skips
// without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cuda_test_util.hpp"
#include "kernels/cuda/loss.hpp"
#include "kernels/cuda/metrics.hpp"
#include "kernels/cuda/optim.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/losses/loss.hpp"
#include "src/optim/optimizer.hpp"

using namespace crackseg;
using test::close;
using test::random_host;

namespace {

// 0/1 mask with ~30% cracks, a pure function of the seed.
Tensor mask(const Dims& d, uint64_t seed, Format f) {
  Tensor t = random_host(d, seed, 0.0f, 1.0f, f);
  for (float& v : t.span<float>()) v = v < 0.3f ? 1.0f : 0.0f;
  return t;
}

void compare_loss(const nlohmann::json& section, const Dims& dims, Format f, double atol) {
  SCOPED_TRACE(section.dump());
  const LossContext lctx{.crack_fraction = 0.1};
  auto cpu = make_loss(section, lctx);
  cuda::DeviceLoss dev(cuda::device_loss_spec(section, lctx));
  Tensor x = random_host(dims, 3, -6.0f, 6.0f, f);
  Tensor y = section.value("name", "") == "softmax_ce" ? mask({dims[0], 1, dims[2], dims[3]}, 4, f) : mask(dims, 4, f);
  Tensor dx = Tensor::empty(dims, DType::f32, x.format());
  const LossOutput want = cpu->forward_backward(x, y, dx, 0.5);
  Tensor xd = cuda::to_device(x), yd = cuda::to_device(y);
  Tensor dxd = Tensor::empty(dims, DType::f32, x.format(), Device::cuda);
  const LossOutput got = dev.forward_backward(xd, yd, dxd, 0.5);
  EXPECT_NEAR(got.loss, want.loss, 1e-9 * std::max(1.0, std::abs(want.loss)));
  for (const auto& [k, v] : want.extra) {
    ASSERT_TRUE(got.extra.count(k)) << "extra " << k;
    EXPECT_NEAR(got.extra.at(k), v, 1e-9 * std::max(1.0, std::abs(v))) << "extra " << k;
  }
  EXPECT_TRUE(close(dxd, dx, atol, 1e-5));
}

}  // namespace

TEST(CudaLosses, EveryLossMatchesTheCpuLoss) {
  CRACKSEG_REQUIRE_GPU();
  const Dims d{3, 1, 17, 19};
  for (const char* name : {"bce", "weighted_bce", "balanced_bce", "dice", "f1", "pseudo_f1"})
    compare_loss({{"name", name}}, d, Format::nhwc, 1e-9);
  compare_loss({{"name", "focal"}, {"gamma", 2.0}, {"alpha", 0.25}}, d, Format::nhwc, 1e-9);
  compare_loss({{"name", "bce_dice"}, {"smooth", 0.5}, {"bce_weight", 0.3}, {"dice_weight", 2.0}}, d, Format::nhwc, 1e-9);
  compare_loss({{"name", "bce"}}, {5, 9}, Format::plain, 1e-9);  // patch CNN (N, K) logits
  compare_loss({{"name", "softmax_ce"}}, {2, 2, 7, 9}, Format::nhwc, 1e-9);
  compare_loss({{"name", "softmax_ce"}}, {2, 3, 5, 4}, Format::nchw, 1e-9);
}

TEST(CudaLosses, SameInputsSameBits) {
  CRACKSEG_REQUIRE_GPU();
  cuda::DeviceLoss dev(cuda::device_loss_spec({{"name", "dice"}}));
  Tensor x = cuda::to_device(random_host({4, 1, 64, 64}, 1, -4, 4));
  Tensor y = cuda::to_device(mask({4, 1, 64, 64}, 2, Format::nhwc));
  Tensor d1 = Tensor::empty(x.dims(), DType::f32, x.format(), Device::cuda), d2 = d1;
  d2 = Tensor::empty(x.dims(), DType::f32, x.format(), Device::cuda);
  const double a = dev.forward_backward(x, y, d1).loss, b = dev.forward_backward(x, y, d2).loss;
  EXPECT_EQ(a, b);
  EXPECT_TRUE(close(d1, cuda::to_host(d2), 0, 0));
}

TEST(CudaOptim, DeviceOptimizerMatchesTheCpuOptimizer) {
  CRACKSEG_REQUIRE_GPU();
  std::vector<OptimConfig> configs(4);
  configs[0] = {.name = "adam", .lr = 1e-2, .weight_decay = 0.1};
  configs[1] = {.name = "adamw", .lr = 1e-2, .weight_decay = 0.1, .clip_norm = 5.0};
  configs[2] = {.name = "sgd", .lr = 0.1, .weight_decay = 0.01, .momentum = 0.9, .dampening = 0.1, .nesterov = true};
  configs[3] = {.name = "sgd", .lr = 0.1, .momentum = 0.0, .clip_value = 0.5};
  for (const auto& cfg : configs) {
    SCOPED_TRACE(cfg.name);
    // Two parameters, the second exempt from weight decay (a bias).
    std::vector<Param> hp, dp;
    for (int k = 0; k < 2; ++k) {
      Tensor w = random_host({257 + 100 * k}, 11 + k);
      hp.push_back({"p" + std::to_string(k), w, Tensor::zeros(w.dims()), k == 0});
      dp.push_back({"p" + std::to_string(k), cuda::to_device(w), cuda::to_device(Tensor::zeros(w.dims())), k == 0});
    }
    std::vector<Param*> hptr{&hp[0], &hp[1]}, dptr{&dp[0], &dp[1]};
    auto cpu = make_optimizer(cfg, hptr);
    cuda::DeviceOptimizer dev(cfg, dptr);
    for (int t = 0; t < 3; ++t) {
      for (int k = 0; k < 2; ++k) {
        Tensor g = random_host(hp[k].value.dims(), 50 + 10 * t + k, -3, 3);
        hp[k].grad.copy_from(g);
        cuda::copy(g, dp[k].grad);
      }
      const StepInfo a = cpu->step(), b = dev.step();
      EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-12 * a.grad_norm);
      EXPECT_EQ(b.applied, a.applied);
    }
    for (int k = 0; k < 2; ++k) EXPECT_TRUE(close(dp[k].value, hp[k].value, 1e-7, 1e-6)) << hp[k].name;
    EXPECT_EQ(dev.step_count(), cpu->step_count());
    auto hs = cpu->state();
    auto ds = dev.state();
    ASSERT_EQ(hs.size(), ds.size());
    for (std::size_t i = 0; i < hs.size(); ++i) {
      EXPECT_EQ(ds[i].first, hs[i].first);
      EXPECT_TRUE(close(*ds[i].second, *hs[i].second, 1e-7, 1e-6)) << hs[i].first;
    }
  }
}

TEST(CudaMetrics, ConfusionCountsAreExact) {
  CRACKSEG_REQUIRE_GPU();
  const Dims d{3, 1, 31, 29};
  Tensor x = random_host(d, 21, -3, 3), y = mask(d, 22, Format::nhwc);
  for (double thr : {0.5, 0.3}) {
    const auto got = cuda::confusion_counts(cuda::to_device(x), cuda::to_device(y), thr);
    ASSERT_EQ(got.size(), 3u);
    const int64_t per = 31 * 29;
    for (int64_t n = 0; n < 3; ++n) {
      int64_t tp = 0, fp = 0, fn = 0, tn = 0;
      for (int64_t i = 0; i < per; ++i) {
        const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(x.span<float>()[n * per + i])));
        const bool pred = p >= thr, truth = y.span<float>()[n * per + i] > 0.5f;
        (pred ? (truth ? tp : fp) : (truth ? fn : tn))++;
      }
      EXPECT_EQ(got[n].tp, tp);
      EXPECT_EQ(got[n].fp, fp);
      EXPECT_EQ(got[n].fn, fn);
      EXPECT_EQ(got[n].tn, tn);
    }
  }
}
