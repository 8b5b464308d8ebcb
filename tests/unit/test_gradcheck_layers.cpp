// ctest-link: crackseg_nn
// Finite-difference gradient checks (central differences, loss = sum(out * R) accumulated in
// double) of every reference layer, for input and parameter gradients, with stride /
// padding / dilation variants and odd sizes, in NCHW and NHWC.
#include <gtest/gtest.h>

#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

struct Case {
  std::string label;
  LayerSpec spec;
  std::vector<Dims> in;
  bool training = true;
  Fill fill = Fill::normal;
  double atol = 2e-3, rtol = 2e-3;  // per op; nonlinear ops carry O(h^2) truncation error
};

const Dims kX{2, 3, 7, 9};

std::vector<Case> cases() {
  return {
      {"conv_k3_s1_p1", Conv2dSpec{3, 4, 3, 1, 1, 1}, {kX}},
      {"conv_k3_s2_p0", Conv2dSpec{3, 4, 3, 2, 0, 1}, {kX}},
      {"conv_k3_s2_p1_d2", Conv2dSpec{3, 2, 3, 2, 1, 2}, {kX}},
      {"conv_k1", Conv2dSpec{3, 5, 1, 1, 0, 1}, {kX}},
      {"conv_k5_p2_nobias", Conv2dSpec{3, 2, 5, 1, 2, 1, false}, {kX}},
      {"conv_k2_s3_p1", Conv2dSpec{3, 3, 2, 3, 1, 1}, {kX}},
      {"convT_k2_s2", ConvTranspose2dSpec{3, 2, 2, 2, 0, 0}, {{2, 3, 4, 5}}},
      {"convT_k3_s2_p0", ConvTranspose2dSpec{3, 2, 3, 2, 0, 0}, {{2, 3, 4, 5}}},
      {"convT_k3_s2_p1_op1", ConvTranspose2dSpec{3, 4, 3, 2, 1, 1}, {{2, 3, 4, 5}}},
      {"convT_k3_s1_p1_nobias", ConvTranspose2dSpec{3, 2, 3, 1, 1, 0, false}, {{2, 3, 4, 5}}},
      {"maxpool_k2_s2", MaxPool2dSpec{2, 2, 0}, {kX}, true, Fill::distinct},
      {"maxpool_k3_s2_p1", MaxPool2dSpec{3, 2, 1}, {kX}, true, Fill::distinct},
      {"maxpool_k3_s1", MaxPool2dSpec{3, 1, 0}, {kX}, true, Fill::distinct},
      {"batchnorm_train", BatchNorm2dSpec{3}, {kX}, true, Fill::normal, 3e-3, 3e-3},
      {"batchnorm_eval", BatchNorm2dSpec{3}, {kX}, false},
      {"relu", ReluSpec{}, {kX}, true, Fill::away_from_zero},
      {"leaky_relu", LeakyReluSpec{0.1f}, {kX}, true, Fill::away_from_zero},
      {"sigmoid", SigmoidSpec{}, {kX}},
      {"softmax_channels", SoftmaxSpec{}, {kX}},
      {"softmax_2d", SoftmaxSpec{}, {{3, 5}}},
      {"dropout_train", DropoutSpec{0.3f}, {kX}},
      {"dropout_2d", DropoutSpec{0.5f}, {{3, 11}}},
      {"dropout_eval", DropoutSpec{0.3f}, {kX}, false},
      {"linear", LinearSpec{10, 4}, {{3, 10}}},
      {"linear_nobias", LinearSpec{7, 3, false}, {{2, 7}}},
      {"flatten", FlattenSpec{}, {kX}},
      {"concat3", ConcatSpec{}, {kX, {2, 1, 7, 9}, {2, 2, 7, 9}}},
      {"add3", AddSpec{}, {kX, kX, kX}},
  };
}

struct Param_ {
  Case c;
  std::string backend;
};

class GradCheck : public ::testing::TestWithParam<Param_> {};

TEST_P(GradCheck, AnalyticMatchesCentralDifferences) {
  const Case& c = GetParam().c;
  auto be = make_backend(GetParam().backend);
  auto layer = be->make_layer(c.spec, "gc." + c.label);
  randomize_params(*layer, 11);
  StepContext ctx;
  ctx.training = c.training;
  ctx.seed = 5;
  ctx.epoch = 2;
  std::vector<Tensor> in;
  std::vector<Dims> dims;
  for (std::size_t k = 0; k < c.in.size(); ++k) {
    in.push_back(random_tensor(c.in[k], 100 + k, be->activation_format(), c.fill));
    dims.push_back(c.in[k]);
  }
  layer->plan(dims);
  const Tensor out = run_forward(*be, *layer, ctx, in);
  const Tensor r = random_tensor(out.dims(), 999, be->activation_format());

  std::vector<Tensor> din;
  std::vector<Tensor*> dptr;
  std::vector<const Tensor*> iptr;
  for (auto& t : in) din.push_back(Tensor::zeros(t.dims(), DType::f32, t.format())), iptr.push_back(&t);
  for (auto& t : din) dptr.push_back(&t);
  layer->backward(ctx, iptr, out, r, dptr);

  const double h = 1e-2;
  auto loss = [&] { return dot(run_forward(*be, *layer, ctx, in), r); };
  auto check = [&](std::span<float> x, std::span<const float> analytic, const std::string& what) {
    double worst = 0;
    std::string at;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const float keep = x[i];
      x[i] = keep + static_cast<float>(h);
      const double lp = loss();
      x[i] = keep - static_cast<float>(h);
      const double lm = loss();
      x[i] = keep;
      const double num = (lp - lm) / (2 * h);
      const double ratio = std::fabs(num - analytic[i]) / (c.atol + c.rtol * std::fabs(num));
      if (ratio > worst) worst = ratio, at = what + "[" + std::to_string(i) + "] numeric " + std::to_string(num) +
                                               " analytic " + std::to_string(analytic[i]);
    }
    EXPECT_LE(worst, 1.0) << c.label << " " << at;
  };
  for (std::size_t k = 0; k < in.size(); ++k) check(in[k].span<float>(), din[k].span<float>(), "din" + std::to_string(k));
  for (Param* p : layer->params()) {
    const Tensor g = p->grad.clone();
    check(p->value.span<float>(), g.span<float>(), p->name);
  }
}

std::vector<Param_> all_params() {
  std::vector<Param_> out;
  for (const auto& b : {"reference", "reference-nhwc"})
    for (auto& c : cases()) out.push_back({c, b});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Reference, GradCheck, ::testing::ValuesIn(all_params()), [](const auto& info) {
  std::string b = info.param.backend == "reference" ? "nchw" : "nhwc";
  return info.param.c.label + "_" + b;
});

}  // namespace
