// ctest-link: crackseg_nn
// Every model family at a tiny legal input on the reference backend: forward and backward
// run, the output has the model's dims, and each parameter tensor's gradient matches central
// differences of loss = sum(out * R).
//
// Per-element central differences through whole deep ReLU networks are dominated by kinks
// (large steps) and float32 rounding (small steps); the per-layer checks (test_gradcheck_layers)
// already do that element by element. Here each parameter tensor P is moved along its own
// analytic gradient direction d = g / |g|: (L(P + h d) - L(P - h d)) / 2h must equal |g|.
// A gradient that is wrongly routed, scaled, summed or missing at any node fails that.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "src/models/model.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;
using nlohmann::json;

namespace {

struct Case {
  std::string label;
  json config;
  int64_t h, w;
  // Kobayashi's nets reach 1x1 (hourglass) or 1x1..3x3 (tiny Spiral-Net) maps at the bottom,
  // where training-mode batchnorm over 2 samples is so curved that no finite-difference step
  // works; they are checked with running statistics (eval mode), the rest in training mode
  // (batch statistics, dropout masks keyed by sample).
  bool training = true;
};

class ModelGrad : public ::testing::TestWithParam<Case> {};

TEST_P(ModelGrad, GradientsMatchCentralDifferences) {
  const Case& c = GetParam();
  auto m = build_model(c.config);
  auto be = make_backend("reference");
  m->graph.instantiate(*be, 126);
  // Random biases and BN affine too, so every parameter's gradient is exercised. BN shifts
  // start at +1 so that most ReLU inputs sit away from the kink: pixels crossing it during the
  // finite-difference step are the main error source of a whole-network check.
  for (Param* p : m->graph.params()) {
    SampleRng rng(9, 0, std::hash<std::string>{}(p->name), Purpose::noise);
    const bool bn_shift = p->name.find(".bn") != std::string::npos && p->name.ends_with(".bias");
    for (auto& v : p->value.span<float>()) v += (bn_shift ? 1.0f : 0.0f) + 0.2f * rng.normal();
  }
  StepContext ctx;
  ctx.training = c.training;
  ctx.seed = 5;
  ctx.epoch = 1;
  const uint64_t ids[2] = {17, 40};
  ctx.sample_ids = ids;
  const int64_t n = 2;
  const Tensor x = random_tensor({n, 3, c.h, c.w}, 1, Format::nchw);
  const Dims out_dims = m->output_dims(n, c.h, c.w);
  const Tensor r = random_tensor(out_dims, 2, Format::nchw);
  m->graph.zero_grad();
  const Tensor& y = m->graph.forward(ctx, x);
  ASSERT_EQ(y.dims(), out_dims);
  m->graph.backward(ctx, r);

  const auto params = m->graph.params();
  std::vector<double> norms;
  for (Param* p : params) {
    double s = 0;
    for (float g : p->grad.span<float>()) s += static_cast<double>(g) * g;
    norms.push_back(std::sqrt(s));
  }
  // Absolute floor: conv biases followed by batchnorm have a true gradient of zero.
  const double floor = 1e-3 * *std::max_element(norms.begin(), norms.end());
  // Eval-mode nets are piecewise linear: the only error is from pixels crossing a ReLU kink,
  // linear in h (1e-3 left 1% on hourglass dec3); 1e-4 keeps it and float32 noise well inside.
  const double h = 1e-4;
  for (std::size_t k = 0; k < params.size(); ++k) {
    Param* p = params[k];
    if (norms[k] < floor) continue;
    const Tensor keep = p->value.clone();
    const Tensor g = p->grad.clone();
    auto loss_at = [&](double step) {
      auto v = p->value.span<float>();
      for (std::size_t i = 0; i < v.size(); ++i)
        v[i] = keep.span<float>()[i] + static_cast<float>(step * g.span<float>()[i] / norms[k]);
      m->graph.mark_params_changed();
      return dot(m->graph.forward(ctx, x), r);
    };
    const double num = (loss_at(h) - loss_at(-h)) / (2 * h);
    p->value.copy_from(keep);
    m->graph.mark_params_changed();
    EXPECT_NEAR(num, norms[k], 5e-3 * norms[k] + floor) << p->name;
  }
}

// Smallest legal sizes and widths that keep every layer kind of each family.
std::vector<Case> cases() {
  return {
      {"patch_cnn", {{"name", "patch_cnn"}, {"h", 2}, {"s", 1}}, 5, 5},
      {"unet", {{"name", "unet"}, {"base", 2}, {"depth", 2}}, 8, 8},
      {"unet_relu", {{"name", "unet"}, {"base", 2}, {"depth", 1}, {"activation", "relu"}, {"dropout", 0}}, 4, 6},
      {"hourglass_unet", {{"name", "hourglass_unet"}, {"width", 0.02}}, 255, 255, false},
      {"spiral_net", {{"name", "spiral_net"}, {"width", 0.04}, {"depths", {1, 2, 1}}}, 7, 7, false},
      {"spiral_net_sum", {{"name", "spiral_net"}, {"width", 0.04}, {"depths", {2, 1, 1}}, {"skip", "sum"}}, 7, 11, false},
      {"spiral_net_train", {{"name", "spiral_net"}, {"width", 0.04}, {"depths", {1, 2}}}, 15, 15},
      {"flex_unet", {{"name", "flex_unet"}, {"layers", 3}, {"base", 2}, {"kernel", 5}}, 8, 8},
  };
}

INSTANTIATE_TEST_SUITE_P(Reference, ModelGrad, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.label; });

}  // namespace
