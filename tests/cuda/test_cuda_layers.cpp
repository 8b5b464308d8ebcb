// ctest-labels: cuda
// ctest-link: crackseg_cuda
// Every CUDA layer against the reference backend (nhwc, so host data uploads as is):
// forward output, input gradients and parameter gradients, TF32 off, deterministic
// algorithms, per-op tolerances. Skips without a device.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/graph/layer.hpp"

using namespace crackseg;
using test::close;
using test::random_host;

namespace {

struct Case {
  std::string label;
  LayerSpec spec;
  std::vector<Dims> inputs;
  double atol, rtol;  // per op: fp32 sums of K terms differ from double sums by ~K eps
  bool training = true;
};

void run_case(const Case& c) {
  SCOPED_TRACE(c.label);
  auto ref_be = make_backend("reference-nhwc");
  auto cuda_be = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  auto ref = ref_be->make_layer(c.spec, "layer");
  auto dev = cuda_be->make_layer(c.spec, "layer");

  // Same parameters on both sides (plain layout); batchnorm scale kept away from 0.
  auto rp = ref->params();
  auto dp = dev->params();
  ASSERT_EQ(rp.size(), dp.size());
  for (std::size_t k = 0; k < rp.size(); ++k) {
    Tensor v = random_host(rp[k]->value.dims(), 100 + k, 0.5f, 1.5f);
    if (k == 0 && !std::holds_alternative<BatchNorm2dSpec>(c.spec)) v = random_host(rp[k]->value.dims(), 100 + k);
    rp[k]->value.copy_from(v);
    cuda_be->upload(v, dp[k]->value);
  }
  std::vector<Tensor> hin;
  std::vector<Tensor> din_ref, din_dev;
  for (std::size_t i = 0; i < c.inputs.size(); ++i) hin.push_back(random_host(c.inputs[i], 10 + i, -2.0f, 2.0f));
  std::vector<Tensor> dev_in;
  for (auto& t : hin) dev_in.push_back(cuda::to_device(t));
  std::vector<const Tensor*> rin, din_ptrs_in;
  for (auto& t : hin) rin.push_back(&t);
  for (auto& t : dev_in) din_ptrs_in.push_back(&t);

  const Dims out_dims = ref->output_dims(c.inputs);
  ASSERT_EQ(dev->output_dims(c.inputs), out_dims);
  const Format f = out_dims.size() == 4 ? Format::nhwc : Format::plain;
  Tensor rout = Tensor::empty(out_dims, DType::f32, f);
  Tensor dout_dev = Tensor::empty(out_dims, DType::f32, f, Device::cuda);
  ref->plan(c.inputs);
  dev->plan(c.inputs);
  ref->params_changed();
  dev->params_changed();

  std::vector<uint64_t> ids;
  for (int64_t n = 0; n < c.inputs[0][0]; ++n) ids.push_back(1000 + 7 * static_cast<uint64_t>(n));
  StepContext ctx{.training = c.training, .seed = 126, .epoch = 3, .sample_ids = ids};
  ref->forward(ctx, rin, rout);
  dev->forward(ctx, din_ptrs_in, dout_dev);
  EXPECT_TRUE(close(dout_dev, rout, c.atol, c.rtol)) << "forward";

  Tensor g = random_host(out_dims, 77, -1.0f, 1.0f, f);
  Tensor g_dev = cuda::to_device(g);
  for (auto& d : c.inputs) {
    din_ref.push_back(Tensor::zeros(d, DType::f32, d.size() == 4 ? Format::nhwc : Format::plain));
    din_dev.push_back(Tensor::empty(d, DType::f32, d.size() == 4 ? Format::nhwc : Format::plain, Device::cuda));
  }
  std::vector<Tensor*> rd, dd;
  for (auto& t : din_ref) rd.push_back(&t);
  for (auto& t : din_dev) dd.push_back(&t);
  ref->backward(ctx, rin, rout, g, rd);
  dev->backward(ctx, din_ptrs_in, dout_dev, g_dev, dd);
  for (std::size_t i = 0; i < din_ref.size(); ++i) EXPECT_TRUE(close(din_dev[i], din_ref[i], c.atol, c.rtol)) << "din " << i;
  for (std::size_t k = 0; k < rp.size(); ++k)
    EXPECT_TRUE(close(dp[k]->grad, rp[k]->grad, c.atol * 10, c.rtol)) << "grad of " << rp[k]->name;

  // A second backward accumulates into the parameter gradients (Layer contract).
  if (!rp.empty()) {
    ref->backward(ctx, rin, rout, g, rd);
    dev->backward(ctx, din_ptrs_in, dout_dev, g_dev, dd);
    for (std::size_t k = 0; k < rp.size(); ++k)
      EXPECT_TRUE(close(dp[k]->grad, rp[k]->grad, c.atol * 20, c.rtol)) << "accumulated grad of " << rp[k]->name;
  }
}

std::vector<Case> cases() {
  return {
      {"conv2d 3x3 same", Conv2dSpec{5, 7, 3, 1, 1}, {{2, 5, 9, 11}}, 1e-5, 1e-4},
      {"conv2d 3x3 stride 2 no padding, no bias", Conv2dSpec{4, 6, 3, 2, 0, 1, false}, {{2, 4, 15, 15}}, 1e-5, 1e-4},
      {"conv2d 3x3 dilation 2", Conv2dSpec{3, 4, 3, 1, 2, 2}, {{1, 3, 10, 10}}, 1e-5, 1e-4},
      {"conv2d 1x1", Conv2dSpec{8, 1, 1, 1, 0}, {{2, 8, 6, 6}}, 1e-5, 1e-4},
      {"conv_transpose2d 2x2 stride 2", ConvTranspose2dSpec{6, 3, 2, 2, 0}, {{2, 6, 5, 7}}, 1e-5, 1e-4},
      {"conv_transpose2d 3x3 stride 2 (hourglass)", ConvTranspose2dSpec{4, 5, 3, 2, 0}, {{2, 4, 7, 7}}, 1e-5, 1e-4},
      {"maxpool2d 2x2", MaxPool2dSpec{2, 2, 0}, {{2, 3, 8, 9}}, 0, 0},
      {"batchnorm2d training", BatchNorm2dSpec{6}, {{3, 6, 5, 4}}, 2e-5, 1e-4},
      {"batchnorm2d inference", BatchNorm2dSpec{6}, {{3, 6, 5, 4}}, 2e-5, 1e-4, false},
      {"relu", ReluSpec{}, {{2, 3, 4, 5}}, 0, 0},
      {"leaky_relu", LeakyReluSpec{0.01f}, {{2, 3, 4, 5}}, 0, 0},
      {"sigmoid", SigmoidSpec{}, {{2, 3, 4, 5}}, 1e-6, 1e-6},
      {"softmax over channels", SoftmaxSpec{}, {{2, 4, 3, 5}}, 1e-6, 1e-5},
      {"softmax over features", SoftmaxSpec{}, {{3, 7}}, 1e-6, 1e-5},
      {"dropout training (mask must match exactly)", DropoutSpec{0.3f}, {{3, 4, 5, 6}}, 0, 0},
      {"dropout 2-D", DropoutSpec{0.5f}, {{4, 33}}, 0, 0},
      {"dropout inference", DropoutSpec{0.5f}, {{2, 3, 4, 4}}, 0, 0, false},
      {"linear", LinearSpec{12, 5}, {{4, 12}}, 1e-5, 1e-4},
      {"linear no bias", LinearSpec{7, 3, false}, {{2, 7}}, 1e-5, 1e-4},
      {"flatten", FlattenSpec{}, {{2, 3, 4, 5}}, 0, 0},
      {"concat", ConcatSpec{}, {{2, 3, 4, 5}, {2, 5, 4, 5}}, 0, 0},
      {"add of three", AddSpec{}, {{2, 3, 4, 5}, {2, 3, 4, 5}, {2, 3, 4, 5}}, 1e-7, 1e-7},
  };
}

}  // namespace

TEST(CudaLayers, EveryLayerMatchesTheReferenceBackend) {
  CRACKSEG_REQUIRE_GPU();
  for (const auto& c : cases()) run_case(c);
}

TEST(CudaLayers, PlanIsIdempotentAndANewShapeReplans) {
  CRACKSEG_REQUIRE_GPU();
  run_case({"conv2d first shape", Conv2dSpec{3, 4, 3, 1, 1}, {{1, 3, 8, 8}}, 1e-5, 1e-4});
  run_case({"conv2d second shape", Conv2dSpec{3, 4, 3, 1, 1}, {{2, 3, 12, 6}}, 1e-5, 1e-4});
}

TEST(CudaLayers, TensorOpsRoundTripAndConvertFormats) {
  CRACKSEG_REQUIRE_GPU();
  Tensor h = random_host({2, 3, 4, 5}, 5, -1, 1, Format::nchw);
  Tensor d = cuda::to_device(h);
  Tensor d2 = Tensor::empty(h.dims(), DType::f32, Format::nhwc, Device::cuda);
  cuda::convert_format(d, d2);
  Tensor back = cuda::to_host(d2);
  EXPECT_EQ(back.format(), Format::nhwc);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 4; ++y)
        for (int64_t x = 0; x < 5; ++x) ASSERT_EQ(back.at(n, c, y, x), h.at(n, c, y, x));
  cuda::accumulate(d, d);
  Tensor twice = cuda::to_host(d);
  for (std::size_t i = 0; i < twice.span<float>().size(); ++i) ASSERT_EQ(twice.span<float>()[i], 2 * h.span<float>()[i]);
}
