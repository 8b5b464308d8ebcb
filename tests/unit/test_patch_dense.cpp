// ctest-link: crackseg_train
// Dense patch-CNN inference (src/train/patch_dense.cpp) against per-patch evaluation.
//
// A patch CNN with model.padding = "context" is evaluated both ways on small random images:
// one context patch per pixel through the model's own graph (Predictor's "patch" mode, the
// training-time computation), and the dense path, which shares every convolution over the
// image and shift-and-stitches 16 pooling phases. Index, phase or weight-reshape mistakes
// give differences of order 0.01-0.1; rounding gives ~1e-7.
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

std::unique_ptr<Model> random_patch_cnn(int h, int s, Backend& be, const std::string& padding = "context") {
  auto m = build_model(json{{"name", "patch_cnn"}, {"h", h}, {"s", s}, {"padding", padding}});
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

std::vector<float> per_patch(Model& model, const std::vector<float>& image, int H, int W) {
  InferenceOptions o;
  o.patch_mode = "patch";
  Predictor p(model, o);
  return p.predict(image.data(), H, W);
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

TEST_P(PatchDense, EqualsPerPatchEvaluation) {
  const Case c = GetParam();
  auto be = make_backend(c.backend);
  auto m = random_patch_cnn(c.h, c.s, *be);
  const auto image = random_image(c.H, c.W, 7);
  DensePatchPredictor dense(*m);
  const auto got = dense.predict(image.data(), c.H, c.W);
  const auto want = per_patch(*m, image, c.H, c.W);
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

TEST(PatchDense, AutoModeIsDenseOnlyForContextModels) {
  auto be = make_backend("onednn");
  const int H = 12, W = 10;
  const auto image = random_image(H, W, 11);
  auto ctx_model = random_patch_cnn(13, 2, *be);
  EXPECT_EQ(ctx_model->graph.num_params(), 96233);  // the same layers as Fan et al.'s
  EXPECT_TRUE(ctx_model->size_rule.valid(36));
  Predictor automatic(*ctx_model, InferenceOptions{});
  DensePatchPredictor direct(*ctx_model);
  EXPECT_EQ(automatic.predict(image.data(), H, W), direct.predict(image.data(), H, W));

  // Fan et al.'s zero-padded model: auto evaluates patch by patch, dense is refused.
  auto same = random_patch_cnn(13, 2, *be, "same");
  Predictor same_auto(*same, InferenceOptions{});
  EXPECT_EQ(same_auto.predict(image.data(), H, W), per_patch(*same, image, H, W));
  InferenceOptions dense;
  dense.patch_mode = "dense";
  Predictor same_dense(*same, dense);
  try {
    (void)same_dense.predict(image.data(), H, W);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("padding"), std::string::npos) << e.what();
  }
  InferenceOptions bad;
  bad.patch_mode = "sparse";
  try {
    Predictor p(*ctx_model, bad);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sparse"), std::string::npos) << e.what();
  }
}

}  // namespace
