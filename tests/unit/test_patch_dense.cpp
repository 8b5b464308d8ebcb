// ctest-link: crackseg_train
// Dense patch-CNN inference (src/train/patch_dense.cpp) against per-patch evaluation.
//
// The reference here cuts, for every pixel, the context patch of side 4*P2+12 around it
// from the symmetric-padded image and runs the model's weights as a plain 'valid' network
// (convs without padding, floor max pools, Flatten, Linear) one patch at a time, then votes
// as Fan et al. That is the per-patch computation dense inference claims to equal (the
// image, not zeros, around each patch's border); the dense path shares all the convolutions
// and shift-and-stitches 16 pooling phases, so index, phase or weight-reshape mistakes show
// up as differences of order 0.1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/models/model.hpp"
#include "src/train/inference.hpp"
#include "src/train/patch_dense.hpp"

using namespace crackseg;
using namespace crackseg::train;
using nlohmann::json;

namespace {

int fold(int i, int n) {  // symmetric, "cba|abc"
  const int period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

std::unique_ptr<Model> random_patch_cnn(int h, int s, Backend& be) {
  auto m = build_model(json{{"name", "patch_cnn"}, {"h", h}, {"s", s}});
  m->graph.instantiate(be, 126);
  for (Param* p : m->graph.params()) {
    SampleRng rng(3, 0, std::hash<std::string>{}(p->name), Purpose::noise);
    if (p->name.ends_with(".bias"))
      for (auto& v : p->value.span<float>()) v = 0.1f * rng.normal();
  }
  m->graph.mark_params_changed();
  return m;
}

std::vector<float> random_image(int H, int W, uint64_t seed) {
  std::vector<float> x(static_cast<std::size_t>(H) * W * 3);
  SampleRng rng(seed, 0, 0, Purpose::noise);
  for (auto& v : x) v = rng.uniform();
  return x;
}

// Per-pixel evaluation of the 'valid' network on each pixel's context patch.
std::vector<float> per_patch_context(Model& model, const std::vector<float>& image, int H, int W) {
  const PatchGeometry geo = PatchGeometry::of(model);
  Graph g;
  NodeId x = g.input();
  int64_t in_c = 3;
  for (int stage = 0; stage < 2; ++stage) {
    const int64_t w = stage == 0 ? 16 : 32;
    for (int j = 1; j <= 2; ++j) {
      const std::string q = "conv" + std::to_string(stage + 1) + "_" + std::to_string(j);
      x = g.add(q, Conv2dSpec{.in_c = in_c, .out_c = w, .kernel = 3, .stride = 1, .padding = 0}, {x});
      x = g.add(q + ".relu", ReluSpec{}, {x});
      in_c = w;
    }
    x = g.add("pool" + std::to_string(stage + 1), MaxPool2dSpec{.kernel = 2, .stride = 2}, {x});
  }
  x = g.add("flatten", FlattenSpec{}, {x});
  x = g.add("fc1", LinearSpec{.in_f = 32 * geo.p2 * geo.p2, .out_f = 64}, {x});
  x = g.add("fc1.relu", ReluSpec{}, {x});
  x = g.add("fc2", LinearSpec{.in_f = 64, .out_f = 64}, {x});
  x = g.add("fc2.relu", ReluSpec{}, {x});
  g.set_output(g.add("fc3", LinearSpec{.in_f = 64, .out_f = geo.window()}, {x}));
  EXPECT_EQ(g.output_dims({1, 3, geo.context, geo.context}), (Dims{1, geo.window()}));
  g.instantiate(*model.graph.backend(), 1);
  std::map<std::string, Param*> src;
  for (Param* p : model.graph.params()) src[p->name] = p;
  for (Param* p : g.params()) std::memcpy(p->value.raw(), src.at(p->name)->value.raw(), p->value.nbytes());
  g.mark_params_changed();

  const int C = geo.context, K = geo.window(), side = 2 * geo.s + 1;
  std::vector<double> sum(static_cast<std::size_t>(H) * W, 0.0);
  std::vector<int> count(sum.size(), 0);
  Tensor patch = Tensor::empty({1, 3, C, C}, DType::f32, Format::nhwc);
  const uint64_t id = 0;
  StepContext ctx;
  ctx.training = false;
  ctx.sample_ids = std::span<const uint64_t>(&id, 1);
  for (int y = 0; y < H; ++y)
    for (int xx = 0; xx < W; ++xx) {
      float* d = patch.data<float>();
      for (int a = 0; a < C; ++a)
        for (int b = 0; b < C; ++b)
          for (int c = 0; c < 3; ++c)
            d[(a * C + b) * 3 + c] =
                image[(static_cast<std::size_t>(fold(y - geo.lead + a, H)) * W + fold(xx - geo.lead + b, W)) * 3 + c];
      const Tensor& out = g.forward(ctx, patch);
      for (int k = 0; k < K; ++k) {
        const int py = y + k / side - geo.s, px = xx + k % side - geo.s;
        if (py < 0 || py >= H || px < 0 || px >= W) continue;
        sum[static_cast<std::size_t>(py) * W + px] += 1.0 / (1.0 + std::exp(-static_cast<double>(out.data<float>()[k])));
        ++count[static_cast<std::size_t>(py) * W + px];
      }
    }
  std::vector<float> p(sum.size());
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<float>(sum[i] / count[i]);
  return p;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

struct Case {
  std::string backend;
  int h, s, H, W;
};

class PatchDense : public ::testing::TestWithParam<Case> {};

TEST_P(PatchDense, EqualsPerPatchEvaluationOnContextPatches) {
  const Case c = GetParam();
  auto be = make_backend(c.backend);
  auto m = random_patch_cnn(c.h, c.s, *be);
  const auto image = random_image(c.H, c.W, 7);
  DensePatchPredictor dense(*m);
  const auto got = dense.predict(image.data(), c.H, c.W);
  const auto want = per_patch_context(*m, image, c.H, c.W);
  EXPECT_LT(max_abs_diff(got, want), 2e-5);
  // Bands of 4 rows (many graph runs, folded rows past the image) give the same map.
  DensePatchPredictor banded(*m, 16);
  EXPECT_LT(max_abs_diff(banded.predict(image.data(), c.H, c.W), got), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Shapes, PatchDense,
                         ::testing::Values(Case{"onednn", 13, 2, 21, 30},  // Fan et al.'s h=13 s=2, odd sizes
                                           Case{"onednn", 13, 2, 9, 6},    // image smaller than a patch
                                           Case{"reference", 15, 3, 11, 14},
                                           Case{"reference", 4, 1, 13, 9}),  // P2 = 2
                         [](const auto& info) {
                           const Case& c = info.param;
                           return c.backend + "_h" + std::to_string(c.h) + "_s" + std::to_string(c.s) + "_" +
                                  std::to_string(c.H) + "x" + std::to_string(c.W);
                         });

TEST(PatchDense, PredictorChoosesTheModeAndZeroPaddedPatchesDifferAtTheBorderRing) {
  auto be = make_backend("onednn");
  auto m = random_patch_cnn(13, 2, *be);
  const int H = 12, W = 10;
  const auto image = random_image(H, W, 11);
  Predictor dense_pred(*m, InferenceOptions{});
  const auto dense = dense_pred.predict(image.data(), H, W);
  DensePatchPredictor direct(*m);
  EXPECT_EQ(dense, direct.predict(image.data(), H, W));
  InferenceOptions per_patch;
  per_patch.patch_mode = "patch";
  Predictor patch_pred(*m, per_patch);
  const auto patched = patch_pred.predict(image.data(), H, W);
  // Zero padding inside every patch vs image context: the same network, different numbers,
  // so the comparison in EqualsPerPatchEvaluationOnContextPatches is not vacuous.
  EXPECT_GT(max_abs_diff(dense, patched), 1e-4);
  for (float p : patched) EXPECT_TRUE(p >= 0.0f && p <= 1.0f);
  InferenceOptions bad;
  bad.patch_mode = "sparse";
  try {
    Predictor p(*m, bad);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sparse"), std::string::npos) << e.what();
  }
}

}  // namespace
