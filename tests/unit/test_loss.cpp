// ctest-link: crackseg_train
// Every loss against central finite differences of its own loss value (double math on
// float logits chosen so x +- h is exact), the pseudo-F1 gradient against eq. 11 computed
// here independently, extreme logits, memory formats, scaling and config errors.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>

#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/losses/loss.hpp"

using namespace crackseg;
using nlohmann::json;

namespace {

// Logits on a 1/64 grid in [-4, 4] (exact in float, and x +- 2^-12 stays exact); targets 0/1
// with about `pos` of them 1.
Tensor grid_logits(Dims d, uint64_t seed, Format f = Format::plain) {
  Tensor t = Tensor::empty(std::move(d), DType::f32, f);
  SampleRng r(seed, 0, 0, Purpose::noise);
  for (auto& v : t.span<float>()) v = static_cast<float>(static_cast<int>(r.below(513)) - 256) / 64.0f;
  return t;
}
Tensor binary_target(Dims d, uint64_t seed, double pos = 0.3, Format f = Format::plain) {
  Tensor t = Tensor::empty(std::move(d), DType::f32, f);
  SampleRng r(seed, 1, 0, Purpose::noise);
  for (auto& v : t.span<float>()) v = r.uniform() < pos ? 1.0f : 0.0f;
  return t;
}

double loss_at(Loss& loss, const Tensor& x, const Tensor& y) {
  Tensor d = Tensor::empty(x.dims(), DType::f32, x.format());
  return loss.forward_backward(x, y, d).loss;
}

// Central differences of the loss value for every element vs the analytic dlogits.
void expect_fd_gradient(Loss& loss, const Tensor& logits, const Tensor& target) {
  Tensor x = logits.clone();
  Tensor g = Tensor::empty(x.dims(), DType::f32, x.format());
  (void)loss.forward_backward(x, target, g);
  const double h = 0x1.0p-12;
  float* xv = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float x0 = xv[i];
    xv[i] = static_cast<float>(x0 + h);
    const double lp = loss_at(loss, x, target);
    xv[i] = static_cast<float>(x0 - h);
    const double lm = loss_at(loss, x, target);
    xv[i] = x0;
    const double fd = (lp - lm) / (2 * h);
    const double an = g.data<float>()[i];
    EXPECT_NEAR(an, fd, 1e-7 + 2e-5 * std::abs(fd)) << loss.name() << " element " << i;
  }
}

json section(const std::string& name, json extra = json::object()) {
  extra["name"] = name;
  return extra;
}

}  // namespace

TEST(Loss, EveryElementwiseLossMatchesFiniteDifferences) {
  const Tensor x = grid_logits({2, 1, 3, 4}, 1);
  const Tensor y = binary_target({2, 1, 3, 4}, 2);
  for (const json& s : {section("bce"), section("weighted_bce", {{"crack_fraction", 0.1}}), section("balanced_bce"),
                        section("focal"), section("focal", {{"gamma", 0.5}, {"alpha", -1}}), section("dice"),
                        section("bce_dice", {{"smooth", 0.5}, {"bce_weight", 0.3}, {"dice_weight", 2.0}}),
                        section("f1"), section("f1", {{"eps", 1e-6}})}) {
    auto loss = make_loss(s);
    SCOPED_TRACE(s.dump());
    expect_fd_gradient(*loss, x, y);
  }
}

TEST(Loss, SoftTargetsAndPatchCnnShapeMatchFiniteDifferences) {
  // Patch CNN: logits (N, K) with (N, K) labels; soft labels exercise the linear mix.
  const Tensor x = grid_logits({3, 9}, 3);
  Tensor y = binary_target({3, 9}, 4);
  y.data<float>()[0] = 0.25f;
  y.data<float>()[5] = 0.75f;
  for (const char* name : {"bce", "balanced_bce", "focal", "dice", "f1"}) {
    auto loss = make_loss(section(name));
    SCOPED_TRACE(name);
    expect_fd_gradient(*loss, x, y);
  }
}

TEST(Loss, SoftmaxCeMatchesFiniteDifferencesForIndexAndOneHotTargets) {
  auto loss = make_loss(section("softmax_ce"));
  const Tensor x = grid_logits({2, 3, 2, 3}, 5, Format::nchw);
  const Tensor idx = binary_target({2, 1, 2, 3}, 6, 0.5, Format::nchw);
  expect_fd_gradient(*loss, x, idx);
  // The same labels one-hot in channels-last memory give the same loss and gradient.
  Tensor onehot = Tensor::zeros({2, 3, 2, 3}, DType::f32, Format::nhwc);
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t w = 0; w < 3; ++w) onehot.at(n, static_cast<int64_t>(idx.at(n, 0, h, w)), h, w) = 1.0f;
  Tensor g1 = Tensor::empty(x.dims(), DType::f32, Format::nchw), g2 = g1.clone();
  const double l1 = loss->forward_backward(x, idx, g1).loss;
  const double l2 = loss->forward_backward(x, onehot, g2).loss;
  EXPECT_DOUBLE_EQ(l1, l2);
  for (int64_t i = 0; i < g1.numel(); ++i) EXPECT_EQ(g1.data<float>()[i], g2.data<float>()[i]);
  // Hand value for one pixel: logits (0, 1, 2), label 2 -> -log softmax_2 = log(1+e^-1+e^-2).
  Tensor x1 = Tensor::empty({1, 3, 1, 1}, DType::f32, Format::nchw), y1 = Tensor::empty({1, 1, 1, 1});
  x1.data<float>()[0] = 0, x1.data<float>()[1] = 1, x1.data<float>()[2] = 2, y1.data<float>()[0] = 2;
  Tensor d1 = Tensor::empty({1, 3, 1, 1}, DType::f32, Format::nchw);
  EXPECT_NEAR(loss->forward_backward(x1, y1, d1).loss, std::log(1 + std::exp(-1.0) + std::exp(-2.0)), 1e-15);
  Tensor bad = y1.clone();
  bad.data<float>()[0] = 3;
  EXPECT_THROW((void)loss->forward_backward(x1, bad, d1), InputError);
  // Channels-last logits with 2 classes and a class-index target.
  expect_fd_gradient(*loss, grid_logits({2, 2, 2, 2}, 7, Format::nhwc), binary_target({2, 1, 2, 2}, 8, 0.5, Format::nhwc));
}

TEST(Loss, HandValuesOfBceAndWeightedBce) {
  Tensor x = Tensor::empty({4}), y = Tensor::empty({4}), d = Tensor::empty({4});
  const float xs[4] = {0.0f, 2.0f, -1.0f, 50.0f}, ys[4] = {1, 0, 0, 0};
  std::copy(xs, xs + 4, x.data<float>());
  std::copy(ys, ys + 4, y.data<float>());
  auto sp = [](double v) { return std::log1p(std::exp(v)); };
  const double l[4] = {std::log(2.0), sp(2.0), sp(-1.0), 50.0 + std::log1p(std::exp(-50.0))};
  EXPECT_NEAR(make_loss(section("bce"))->forward_backward(x, y, d).loss, (l[0] + l[1] + l[2] + l[3]) / 4, 1e-14);
  EXPECT_NEAR(d.data<float>()[0], (0.5 - 1) / 4, 1e-8);
  // f = 0.2: w1 = 1/(2f) = 2.5, w0 = 1/(2(1-f)) = 0.625.
  const auto out = make_loss(section("weighted_bce"), LossContext{.crack_fraction = 0.2})->forward_backward(x, y, d);
  EXPECT_NEAR(out.loss, (2.5 * l[0] + 0.625 * (l[1] + l[2] + l[3])) / 4, 1e-14);
  EXPECT_DOUBLE_EQ(out.extra.at("w1"), 2.5);
  // Balanced: one crack element in four -> w1 = 4/2 = 2, w0 = 4/6.
  const auto bal = make_loss(section("balanced_bce"))->forward_backward(x, y, d);
  EXPECT_NEAR(bal.loss, (2 * l[0] + (4.0 / 6) * (l[1] + l[2] + l[3])) / 4, 1e-14);
}

TEST(Loss, PseudoF1GradientFollowsKobayashiEq11) {
  const Tensor x = grid_logits({2, 1, 4, 4}, 9);
  Tensor y = binary_target({2, 1, 4, 4}, 10);
  y.data<float>()[3] = 0.5f;  // one soft label: the two terms mix linearly
  Tensor d = Tensor::empty(x.dims(), DType::f32, x.format());
  const auto out = make_loss(section("pseudo_f1"))->forward_backward(x, y, d, 0.5);
  // Independent computation: statistics first, then the per-class weights of eq. 11.
  double s_pos = 0, s_all = 0, n1 = 0, bce = 0;
  const auto xs = x.span<float>();
  const auto ys = std::as_const(y).span<float>();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double p = 1 / (1 + std::exp(-static_cast<double>(xs[i])));
    s_pos += p * ys[i], s_all += p, n1 += ys[i];
    bce -= ys[i] * std::log(p) + (1 - ys[i]) * std::log(1 - p);
  }
  const double w_crack = 1 / s_pos - 1 / (n1 + s_all), w_back = 1 / (n1 + s_all);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const double p = 1 / (1 + std::exp(-static_cast<double>(xs[i])));
    const double expect = 0.5 * (ys[i] * (p - 1) * w_crack + (1 - ys[i]) * p * w_back);
    EXPECT_NEAR(d.data<float>()[i], expect, 1e-7 * std::abs(expect) + 1e-12) << i;
  }
  EXPECT_NEAR(out.loss, bce / 32, 1e-12);
  EXPECT_NEAR(out.extra.at("bce"), bce / 32, 1e-12);
  EXPECT_NEAR(out.extra.at("f1"), 2 * s_pos / (n1 + s_all), 1e-12);
}

TEST(Loss, ExtremeLogitsGiveFiniteValuesAndGradients) {
  Tensor x = Tensor::empty({2, 1, 2, 2}), y = Tensor::empty({2, 1, 2, 2});
  const float xs[8] = {50, -50, 50, -50, 100, -100, 88, -104};
  const float ys[8] = {0, 1, 1, 0, 1, 0, 0, 1};
  std::copy(xs, xs + 8, x.data<float>());
  std::copy(ys, ys + 8, y.data<float>());
  for (const auto& name : loss_names()) {
    if (name == "softmax_ce") continue;
    auto loss = make_loss(section(std::string(name)), LossContext{.crack_fraction = 0.05});
    Tensor d = Tensor::empty(x.dims());
    const auto out = loss->forward_backward(x, y, d);
    EXPECT_TRUE(std::isfinite(out.loss)) << name;
    for (const auto& [k, v] : out.extra) EXPECT_TRUE(std::isfinite(v)) << name << " " << k;
    for (float g : d.span<float>()) EXPECT_TRUE(std::isfinite(g)) << name;
  }
  // All logits -50 with crack pixels present: F1 tiny but the losses stay finite.
  x.fill_(-50.0f);
  for (const char* name : {"f1", "pseudo_f1", "dice"}) {
    Tensor d = Tensor::empty(x.dims());
    const auto out = make_loss(section(name))->forward_backward(x, y, d);
    EXPECT_TRUE(std::isfinite(out.loss)) << name;
    for (float g : d.span<float>()) EXPECT_TRUE(std::isfinite(g)) << name;
  }
  Tensor x2 = Tensor::empty({1, 2, 1, 2}, DType::f32, Format::nchw), y2 = Tensor::empty({1, 1, 1, 2});
  x2.data<float>()[0] = 100, x2.data<float>()[1] = -100, x2.data<float>()[2] = -100, x2.data<float>()[3] = 100;
  y2.data<float>()[0] = 1, y2.data<float>()[1] = 1;
  Tensor d2 = Tensor::empty(x2.dims(), DType::f32, Format::nchw);
  const auto ce = make_loss(section("softmax_ce"))->forward_backward(x2, y2, d2);
  EXPECT_NEAR(ce.loss, (200.0 + 0.0) / 2, 1e-9);  // pixel 0 wrong by 200, pixel 1 right
  for (float g : d2.span<float>()) EXPECT_TRUE(std::isfinite(g));
}

TEST(Loss, LayoutsAreHandledAndGradScaleIsLinear) {
  // Logits channels-last with C = 3; a target in nchw must give the same numbers as the same
  // target converted to nhwc (flat path vs mapped path).
  const Tensor x = grid_logits({2, 3, 2, 2}, 11, Format::nhwc);
  const Tensor y_nchw = binary_target({2, 3, 2, 2}, 12, 0.3, Format::nchw);
  const Tensor y_nhwc = y_nchw.to_format(Format::nhwc);
  for (const char* name : {"bce", "focal", "dice", "pseudo_f1"}) {
    auto loss = make_loss(section(name));
    Tensor d1 = Tensor::empty(x.dims(), DType::f32, Format::nhwc), d2 = d1.clone(), d3 = d1.clone();
    const double l1 = loss->forward_backward(x, y_nchw, d1).loss;
    const double l2 = loss->forward_backward(x, y_nhwc, d2).loss;
    (void)loss->forward_backward(x, y_nhwc, d3, -3.0);
    EXPECT_NEAR(l1, l2, 1e-15) << name;
    for (int64_t i = 0; i < d1.numel(); ++i) {
      EXPECT_EQ(d1.data<float>()[i], d2.data<float>()[i]) << name;
      EXPECT_NEAR(d3.data<float>()[i], -3.0 * d2.data<float>()[i], 4e-7 * std::abs(d2.data<float>()[i])) << name;
    }
  }
  auto bce = make_loss(section("bce"));
  Tensor wrong_format = Tensor::empty(x.dims(), DType::f32, Format::nchw);
  EXPECT_THROW((void)bce->forward_backward(x, y_nchw, wrong_format), InputError);
  Tensor wrong_dims = Tensor::empty({2, 3, 2, 1}, DType::f32, Format::nhwc);
  EXPECT_THROW((void)bce->forward_backward(x, y_nchw, wrong_dims), Error);
  Tensor u8 = Tensor::zeros({2, 3, 2, 2}, DType::u8, Format::nhwc);
  Tensor d = Tensor::empty(x.dims(), DType::f32, Format::nhwc);
  EXPECT_THROW((void)bce->forward_backward(x, u8, d), InputError);
}

TEST(Loss, LargeBatchSumsAreExactlyRepeatableAndMatchASerialSum) {
  // More elements than one reduction chunk, so the chunked deterministic sum is exercised.
  const Tensor x = grid_logits({3, 1, 61, 67}, 13);
  const Tensor y = binary_target({3, 1, 61, 67}, 14, 0.1);
  auto loss = make_loss(section("bce"));
  Tensor d1 = Tensor::empty(x.dims()), d2 = Tensor::empty(x.dims());
  const double a = loss->forward_backward(x, y, d1).loss, b = loss->forward_backward(x, y, d2).loss;
  EXPECT_EQ(a, b);
  long double serial = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const long double xv = x.data<float>()[i], yv = y.data<float>()[i];
    serial += std::log1p(std::exp(-std::abs(xv))) + std::max(xv, 0.0L) - yv * xv;
  }
  EXPECT_NEAR(a, static_cast<double>(serial / x.numel()), 1e-13);
}

TEST(Loss, ConfigErrorsNameTheKeyAndTheNearestValidOne) {
  try {
    (void)make_loss(section("focal", {{"gama", 2}}));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'gama'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'gamma'"), std::string::npos) << e.what();
  }
  try {
    (void)make_loss(section("dcie"));
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'dice'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)make_loss(section("weighted_bce")), InputError);  // no crack fraction anywhere
  EXPECT_THROW((void)make_loss(section("dice", {{"smooth", "one"}})), InputError);
  EXPECT_THROW((void)make_loss(section("f1", {{"eps", 0}})), InputError);
  EXPECT_EQ(make_loss(json::object())->name(), "bce");
}
