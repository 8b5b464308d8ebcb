// ctest-link: crackseg_train
// Metrics against cases worked out by hand (in the comments), empty masks and all-background
// predictions, AP / ODS / OIS with known answers, per-source breakdown, and the flat int64
// layout: round trip, and summing two accumulators' flats equals accumulating both sets.
#include <gtest/gtest.h>

#include <cmath>

#include "src/core/error.hpp"
#include "src/metrics/metrics.hpp"

using namespace crackseg;

namespace {
using P = std::vector<float>;
using M = std::vector<uint8_t>;
MetricLayout layout(int64_t n, int bins = 256, std::vector<std::string> sources = {"all"}) {
  return MetricLayout{.num_images = n, .bins = bins, .threshold = 0.5, .sources = std::move(sources)};
}
void expect_scores(const Scores& s, double p, double r, double f1, double iou, double acc) {
  EXPECT_DOUBLE_EQ(s.precision, p);
  EXPECT_DOUBLE_EQ(s.recall, r);
  EXPECT_DOUBLE_EQ(s.f1, f1);
  EXPECT_DOUBLE_EQ(s.dice, f1);
  EXPECT_DOUBLE_EQ(s.iou, iou);
  EXPECT_DOUBLE_EQ(s.accuracy, acc);
}
}  // namespace

TEST(Metrics, ConfusionAndScoresOfHandCases) {
  MetricCounts m(layout(4));
  m.add_image(0, 0, P{0.9f, 0.6f, 0.4f, 0.1f}, M{1, 0, 1, 0});  // TP FP FN TN = 1 1 1 1
  m.add_image(1, 0, P{0.1f, 0.2f, 0.3f, 0.4f}, M{0, 0, 0, 0});  // empty mask, nothing predicted
  m.add_image(2, 0, P{0.7f, 0.2f, 0.3f, 0.4f}, M{0, 0, 0, 0});  // empty mask, one false positive
  m.add_image(3, 0, P{0.1f, 0.2f, 0.3f, 0.5f}, M{1, 1, 0, 1});  // all background but p = 0.5 at a crack
  EXPECT_EQ(m.confusion(0), (Confusion{1, 1, 1, 1}));
  EXPECT_EQ(m.confusion(3), (Confusion{1, 0, 2, 1}));  // p >= threshold counts as crack
  expect_scores(scores_from(m.confusion(0)), 0.5, 0.5, 0.5, 1.0 / 3, 0.5);
  expect_scores(scores_from(m.confusion(1)), 1, 1, 1, 1, 1);         // defined as perfect
  expect_scores(scores_from(m.confusion(2)), 0, 0, 0, 0, 0.75);      // 0/0 recall := 0
  expect_scores(scores_from(m.confusion(3)), 1, 1.0 / 3, 0.5, 1.0 / 3, 0.5);
  expect_scores(scores_from(Confusion{0, 0, 3, 1}), 0, 0, 0, 0, 0.25);  // all-background prediction

  const MetricReport r = compute_metrics(m);
  EXPECT_EQ(r.all.images, 4);
  // Per-image means: precision (0.5 + 1 + 0 + 1) / 4, recall (0.5 + 1 + 0 + 1/3) / 4, ...
  EXPECT_DOUBLE_EQ(r.all.mean.precision, 2.5 / 4);
  EXPECT_DOUBLE_EQ(r.all.mean.recall, (0.5 + 1 + 1.0 / 3) / 4);
  EXPECT_DOUBLE_EQ(r.all.mean.f1, 2.0 / 4);
  EXPECT_DOUBLE_EQ(r.all.mean.iou, (1.0 / 3 + 1 + 1.0 / 3) / 4);
  EXPECT_DOUBLE_EQ(r.all.mean.accuracy, (0.5 + 1 + 0.75 + 0.5) / 4);
  // Micro: summed counts TP 2, FP 2, FN 3, TN 9.
  EXPECT_EQ(r.all.counts, (Confusion{2, 2, 3, 9}));
  expect_scores(r.all.micro, 0.5, 0.4, 4.0 / 9, 2.0 / 7, 11.0 / 16);
  for (const auto& [k, v] : r.all.scalars()) EXPECT_FALSE(std::isnan(v)) << k;
}

TEST(Metrics, AveragePrecisionOdsOisOnKnownCases) {
  // bins = 4: thresholds 0, .25, .5, .75.
  MetricCounts m(layout(3, 4, {"cfd", "deepcrack"}));
  // A: pos in bins 3 and 1, neg in bins 2 and 0. F per k (3..0): 2/3, 1/2, 4/5, 2/3 -> best 0.8.
  //    AP: k=3 R .5 P 1 -> .5; k=1 R 1 P 2/3 -> +1/3.
  m.add_image(0, 0, P{0.8f, 0.3f, 0.6f, 0.1f}, M{1, 1, 0, 0});
  // B: pos in bin 3, neg in bins 2, 1, 0. F per k: 1, 2/3, 1/2, 2/5 -> best 1; AP 1.
  m.add_image(1, 1, P{0.9f, 0.7f, 0.4f, 0.2f}, M{1, 0, 0, 0});
  const MetricReport r2 = compute_metrics(m);
  EXPECT_DOUBLE_EQ(r2.all.ois, 0.9);
  // ODS on summed counts: k=3 TP 2 FP 0 FN 1 -> 0.8; k=2 4/7; k=1 6/9; k=0 6/11.
  EXPECT_DOUBLE_EQ(r2.all.ods, 0.8);
  EXPECT_DOUBLE_EQ(r2.all.ods_threshold, 0.75);
  EXPECT_NEAR(r2.all.map, (0.5 + 1.0 / 3 + 1.0) / 2, 1e-15);
  EXPECT_EQ(r2.all.ap_images, 2);
  EXPECT_NEAR(r2.by_source.at("cfd").map, 0.5 + 1.0 / 3, 1e-15);
  EXPECT_DOUBLE_EQ(r2.by_source.at("deepcrack").map, 1.0);
  // C: no crack pixels; excluded from mAP, perfect at the top threshold for OIS.
  m.add_image(2, 0, P{0.1f, 0.6f, 0.3f, 0.2f}, M{0, 0, 0, 0});
  const MetricReport r3 = compute_metrics(m);
  EXPECT_EQ(r3.all.ap_images, 2);
  EXPECT_NEAR(r3.all.map, r2.all.map, 1e-15);
  EXPECT_DOUBLE_EQ(r3.all.ois, (0.8 + 1 + 1) / 3);
  EXPECT_EQ(r3.by_source.at("cfd").images, 2);
  EXPECT_EQ(r3.by_source.at("deepcrack").images, 1);
  // Ties inside one bin form one operating point: pos 0.55 and neg 0.58 both in bin 2 -> AP 0.5.
  MetricCounts t(layout(1, 4));
  t.add_image(0, 0, P{0.55f, 0.58f}, M{1, 0});
  EXPECT_DOUBLE_EQ(compute_metrics(t).all.map, 0.5);
  // With fine bins the same pixels rank apart: the negative first -> P at full recall 1/2.
  MetricCounts fine(layout(1, 1000));
  fine.add_image(0, 0, P{0.55f, 0.58f}, M{1, 0});
  EXPECT_DOUBLE_EQ(compute_metrics(fine).all.map, 0.5);
  MetricCounts perfect(layout(1, 1000));
  perfect.add_image(0, 0, P{0.58f, 0.55f, 0.01f}, M{1, 0, 0});
  EXPECT_DOUBLE_EQ(compute_metrics(perfect).all.map, 1.0);
}

TEST(Metrics, FlatRoundTripAndSumOfTwoAccumulatorsEqualsOne) {
  const MetricLayout lay = layout(5, 16, {"a", "b"});
  auto image = [](int64_t i) {
    P p(12);
    M y(12);
    for (std::size_t k = 0; k < 12; ++k) {
      p[k] = static_cast<float>(std::fmod(0.173 * static_cast<double>(k + 7 * i), 1.0));
      y[k] = static_cast<uint8_t>((k * 5 + i) % 4 == 0);
    }
    return std::pair{p, y};
  };
  MetricCounts whole(lay), rank0(lay), rank1(lay);
  for (int64_t i = 0; i < 5; ++i) {
    const auto [p, y] = image(i);
    whole.add_image(i, static_cast<int>(i % 2), p, y);
    (i < 3 ? rank0 : rank1).add_image(i, static_cast<int>(i % 2), p, y);
  }
  // What an MPI_SUM allreduce of the two flats produces.
  std::vector<int64_t> sum = rank0.flat();
  for (std::size_t k = 0; k < sum.size(); ++k) sum[k] += rank1.flat()[k];
  EXPECT_EQ(sum, whole.flat());
  const MetricCounts reduced = MetricCounts::from_flat(lay, sum);
  EXPECT_EQ(compute_metrics(reduced).to_json(), compute_metrics(whole).to_json());
  rank0.merge(rank1);
  EXPECT_EQ(rank0.flat(), whole.flat());
  EXPECT_EQ(MetricCounts::from_flat(lay, whole.flat()).flat(), whole.flat());
  EXPECT_THROW((void)MetricCounts::from_flat(layout(4, 16, {"a", "b"}), whole.flat()), Error);
  // An image evaluated on two ranks is caught after the reduction.
  MetricCounts dup(lay);
  const auto [p, y] = image(1);
  dup.add_image(1, 1, p, y);
  dup.merge(whole);
  EXPECT_THROW((void)compute_metrics(dup), Error);
  EXPECT_THROW(whole.add_image(1, 1, p, y), Error);  // and twice on one rank at once
}

TEST(Metrics, BatchTensorsMatchPerImageCalls) {
  // prob (2, 1, 2, 3) channels-last (= nchw for one channel), u8 and f32 targets.
  Tensor prob = Tensor::empty({2, 1, 2, 3}, DType::f32, Format::nhwc);
  Tensor mask_u8 = Tensor::empty({2, 1, 2, 3}, DType::u8, Format::nchw);
  Tensor mask_f = Tensor::empty({2, 1, 2, 3}, DType::f32, Format::nchw);
  const P p = {0.9f, 0.2f, 0.6f, NAN, 0.5f, 0.1f, 0.3f, 0.8f, 0.05f, 1.5f, -0.2f, 0.49f};
  const M y = {1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1};
  std::copy(p.begin(), p.end(), prob.data<float>());
  std::copy(y.begin(), y.end(), mask_u8.data<uint8_t>());
  for (std::size_t k = 0; k < y.size(); ++k) mask_f.data<float>()[k] = y[k];
  const std::vector<int64_t> idx = {3, 0};
  const std::vector<int> src = {1, 0};
  MetricCounts a(layout(4, 8, {"x", "y"})), b(a.layout()), c(a.layout());
  a.add_batch(prob, mask_u8, idx, src);
  b.add_batch(prob, mask_f, idx, src);
  c.add_image(3, 1, std::span(p).subspan(0, 6), std::span(y).subspan(0, 6));
  c.add_image(0, 0, std::span(p).subspan(6, 6), std::span(y).subspan(6, 6));
  EXPECT_EQ(a.flat(), c.flat());
  EXPECT_EQ(b.flat(), c.flat());
  // NaN counts as 0 (background, bin 0); out-of-range values are clamped.
  EXPECT_EQ(c.confusion(3), (Confusion{2, 1, 1, 2}));
  EXPECT_EQ(c.confusion(0), (Confusion{1, 1, 2, 2}));
  EXPECT_EQ(c.pos_hist(3)[0], 1);  // the NaN at a crack pixel
  EXPECT_EQ(c.neg_hist(0)[7], 1);  // 1.5, clamped to 1
  EXPECT_EQ(c.neg_hist(0)[0], 2);  // 0.05 and -0.2 (clamped to 0)
  EXPECT_EQ(c.pos_hist(0)[6], 1);  // 0.8 * 8 = 6.4
  const auto r = compute_metrics(c);
  EXPECT_EQ(r.by_source.size(), 2u);
  for (const auto& [k, v] : r.all.scalars()) EXPECT_TRUE(std::isfinite(v)) << k;
  EXPECT_THROW(a.add_batch(prob, mask_u8, std::vector<int64_t>{1}, std::vector<int>{0}), InputError);
  EXPECT_THROW(MetricCounts(layout(2)).add_image(0, 1, P{0.5f}, M{1}), Error);  // unknown source id
  EXPECT_THROW(MetricCounts(layout(2)).add_image(2, 0, P{0.5f}, M{1}), Error);  // index out of range
}

TEST(Metrics, NoImagesGiveZerosNotNaN) {
  const MetricReport r = compute_metrics(MetricCounts(layout(3)));
  EXPECT_EQ(r.all.images, 0);
  EXPECT_TRUE(r.by_source.empty());
  for (const auto& [k, v] : r.all.scalars()) EXPECT_TRUE(std::isfinite(v)) << k;
  EXPECT_EQ(r.to_json()["all"]["images"], 0);
}
