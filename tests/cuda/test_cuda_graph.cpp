// ctest-labels: cuda
// ctest-link: crackseg_cuda
// Whole models on the CUDA backend against the reference backend (itself held to finite
// differences in tests/unit): the same seeded weights, input, sample ids and output
// gradient must give the same logits and the same gradient for every parameter, through
// the Graph (multi-consumer skips, concat, dropout, batchnorm in training mode). Models:
// a small U-Net, a small Spiral-Net and the patch CNN (flatten, linear). TF32 off,
// deterministic algorithms. Skips without a device.
//
// Needs the Graph to route its three host-only operations through the backend for device
// tensors (input copy, multi-consumer gradient sum, zero_grad); see docs/GPU.md.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/models/model.hpp"

using namespace crackseg;
using test::close;
using test::random_host;

namespace {

void compare_model(const nlohmann::json& cfg, int64_t size, double rtol) {
  SCOPED_TRACE(cfg.dump());
  auto ref_model = build_model(cfg);
  auto dev_model = build_model(cfg);
  auto ref_be = make_backend("reference-nhwc");
  auto dev_be = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  ref_model->graph.instantiate(*ref_be, 126);
  dev_model->graph.instantiate(*dev_be, 126);

  const Dims in{2, 3, size, size};
  Tensor x = random_host(in, 1, 0.0f, 1.0f, Format::nhwc);
  const std::vector<uint64_t> ids = {17, 4242};
  const StepContext ctx{.training = true, .seed = 126, .epoch = 2, .sample_ids = ids};
  const Tensor& y_ref = ref_model->graph.forward(ctx, x);
  const Tensor& y_dev = dev_model->graph.forward(ctx, cuda::to_device(x));
  EXPECT_TRUE(close(y_dev, y_ref, 1e-4, rtol)) << "logits";

  Tensor g = random_host(y_ref.dims(), 2, -1.0f, 1.0f, y_ref.format());
  ref_model->graph.zero_grad();
  dev_model->graph.zero_grad();
  ref_model->graph.backward(ctx, g);
  dev_model->graph.backward(ctx, cuda::to_device(g));
  auto rp = ref_model->graph.params();
  auto dp = dev_model->graph.params();
  ASSERT_EQ(rp.size(), dp.size());
  for (std::size_t i = 0; i < rp.size(); ++i) {
    // Gradients sum over the whole batch and image: scale the absolute part by their size.
    double scale = 0;
    for (float v : rp[i]->grad.span<float>()) scale = std::max(scale, static_cast<double>(std::abs(v)));
    EXPECT_TRUE(close(dp[i]->grad, rp[i]->grad, 1e-4 * std::max(1.0, scale), rtol)) << rp[i]->name;
  }
}

}  // namespace

TEST(CudaGraph, UNetMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_model({{"name", "unet"}, {"base", 4}, {"depth", 2}, {"dropout", 0.1}}, 16, 1e-3);
}

TEST(CudaGraph, SpiralNetMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_model({{"name", "spiral_net"}, {"depths", {1, 2, 3}}, {"width", 0.0625}}, 31, 1e-3);
}

TEST(CudaGraph, PatchCnnMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  compare_model({{"name", "patch_cnn"}, {"h", 13}, {"s", 2}}, 27, 1e-3);
}
