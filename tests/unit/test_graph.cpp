// ctest-link: crackseg_nn
// Graph: shape inference, parameter counts and MACs from specs, seeded initialisation,
// gradient summation over a multi-branch DAG (finite differences through the reference
// backend), planning once per shape, liveness and the backend registry.
#include <gtest/gtest.h>

#include "src/graph/graph.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

// x -> conv a -> relu -> {conv b, conv c (two consumers of r)}; concat(b, c) -> conv d;
// add(d, conv e(r)) -> out. r has three consumers, one of them through add.
Graph branchy(NodeId* r_out = nullptr) {
  Graph g;
  NodeId x = g.input();
  NodeId a = g.add("a", Conv2dSpec{3, 4, 3, 1, 1}, {x});
  NodeId r = g.add("r", SigmoidSpec{}, {a});  // smooth: no kinks for finite differences
  NodeId b = g.add("b", Conv2dSpec{4, 2, 3, 1, 1}, {r});
  NodeId c = g.add("c", Conv2dSpec{4, 3, 1, 1, 0}, {r});
  NodeId cat = g.add("cat", ConcatSpec{}, {b, c});
  NodeId d = g.add("d", Conv2dSpec{5, 2, 3, 1, 1}, {cat});
  NodeId e = g.add("e", Conv2dSpec{4, 2, 1, 1, 0}, {r});
  NodeId s = g.add("sum", AddSpec{}, {d, e, d});
  NodeId o = g.add("bn", BatchNorm2dSpec{2}, {s});
  g.set_output(o);
  if (r_out) *r_out = r;
  return g;
}

TEST(Graph, ShapesParamsAndMacsFromSpecs) {
  Graph g = branchy();
  EXPECT_EQ(g.output_dims({2, 3, 7, 9}), (Dims{2, 2, 7, 9}));
  EXPECT_EQ(g.num_params(), (4 * 3 * 9 + 4) + (2 * 4 * 9 + 2) + (3 * 4 + 3) + (2 * 5 * 9 + 2) + (2 * 4 + 2) + 4);
  const double px = 7 * 9;
  EXPECT_DOUBLE_EQ(g.forward_macs_per_sample({3, 7, 9}), px * (4 * 27 + 2 * 36 + 3 * 4 + 2 * 45 + 2 * 4));
  EXPECT_THROW((void)g.output_dims({2, 4, 7, 9}), Error);  // conv 'a' expects 3 channels
  Graph bad;
  NodeId x = bad.input();
  bad.set_output(bad.add("pool", MaxPool2dSpec{4, 4, 0}, {x}));
  try {
    (void)bad.output_dims({1, 1, 3, 3});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pool"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(1, 1, 3, 3)"), std::string::npos) << e.what();
  }
}

TEST(Graph, InitialisationIsSeededAndFollowsTheSpec) {
  Graph g1, g2, g3;
  for (Graph* g : {&g1, &g2, &g3}) {
    NodeId x = g->input();
    NodeId c = g->add("c", Conv2dSpec{64, 128, 3, 1, 1}, {x});
    NodeId t = g->add("t", ConvTranspose2dSpec{128, 32, 2, 2}, {c});
    g->set_output(g->add("bn", BatchNorm2dSpec{32}, {t}));
  }
  auto be = make_backend("reference");
  g1.instantiate(*be, 7);
  g2.instantiate(*be, 7);
  g3.instantiate(*be, 8);
  auto p1 = g1.params(), p2 = g2.params(), p3 = g3.params();
  ASSERT_EQ(p1.size(), 6u);
  EXPECT_EQ(p1[0]->name, "c.weight");
  for (std::size_t i = 0; i < p1.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(p1[i]->value.raw(), p2[i]->value.raw(), p1[i]->value.nbytes()));
  }
  EXPECT_NE(0, std::memcmp(p1[0]->value.raw(), p3[0]->value.raw(), p1[0]->value.nbytes()));
  auto moments = [](const Tensor& t, double& mean, double& sd, double& mx) {
    double s = 0, s2 = 0;
    mx = 0;
    for (float v : t.span<float>()) s += v, s2 += double(v) * v, mx = std::max(mx, double(std::fabs(v)));
    mean = s / t.numel();
    sd = std::sqrt(s2 / t.numel() - mean * mean);
  };
  double mean, sd, mx;
  moments(p1[0]->value, mean, sd, mx);  // He normal, fan_in = 64*9
  EXPECT_NEAR(sd, std::sqrt(2.0 / 576), 0.01 * std::sqrt(2.0 / 576) + 3 * std::sqrt(2.0 / 576) / std::sqrt(2 * 73728.0));
  EXPECT_NEAR(mean, 0, 4 * sd / std::sqrt(73728.0));
  moments(p1[2]->value, mean, sd, mx);  // Glorot uniform, fans 32*4 and 128*4
  const double lim = std::sqrt(6.0 / (128 + 512));
  EXPECT_LE(mx, lim);
  EXPECT_GT(mx, 0.99 * lim);
  EXPECT_NEAR(sd, lim / std::sqrt(3.0), 0.03 * lim);
  for (float v : p1[1]->value.span<float>()) EXPECT_EQ(v, 0.0f);  // bias
  for (float v : p1[4]->value.span<float>()) EXPECT_EQ(v, 1.0f);  // BN scale
  for (float v : p1[5]->value.span<float>()) EXPECT_EQ(v, 0.0f);  // BN shift
  EXPECT_FALSE(p1[1]->decay);
  EXPECT_TRUE(p1[0]->decay);
}

// Loss = sum(out * R). Parameter gradients through the graph vs central differences: the
// tensor r feeds three consumers and `d` feeds add twice, so wrong summation shows.
void graph_gradcheck(const std::string& backend_name, bool training) {
  Graph g = branchy();
  auto be = make_backend(backend_name);
  g.instantiate(*be, 3);
  for (Param* p : g.params()) {  // random biases and BN affine too
    SampleRng rng(9, 0, std::hash<std::string>{}(p->name), Purpose::noise);
    for (auto& v : p->value.span<float>()) v += 0.3f * rng.normal();
  }
  StepContext ctx;
  ctx.training = training;
  const Tensor x = random_tensor({2, 3, 7, 9}, 1, Format::nchw);
  const Tensor r = random_tensor({2, 2, 7, 9}, 2, Format::nchw);
  g.zero_grad();
  (void)g.forward(ctx, x);
  g.backward(ctx, r);  // r is nchw; the graph converts when the backend differs
  const double h = 1e-2;
  for (Param* p : g.params()) {
    const Tensor analytic = p->grad.clone();
    auto v = p->value.span<float>();
    for (std::size_t i = 0; i < v.size(); i += 3) {
      const float keep = v[i];
      v[i] = keep + float(h);
      g.mark_params_changed();
      const double lp = dot(g.forward(ctx, x), r);
      v[i] = keep - float(h);
      g.mark_params_changed();
      const double lm = dot(g.forward(ctx, x), r);
      v[i] = keep;
      const double num = (lp - lm) / (2 * h);
      EXPECT_NEAR(analytic.span<float>()[i], num, 3e-3 + 3e-3 * std::fabs(num)) << p->name << "[" << i << "]";
    }
  }
}

TEST(Graph, GradientsSumOverConsumersReferenceNchw) { graph_gradcheck("reference", true); }
TEST(Graph, GradientsSumOverConsumersReferenceNhwcEval) { graph_gradcheck("reference-nhwc", false); }

TEST(Graph, PlansOncePerShapeAndSkipsDeadNodes) {
  Graph g;
  NodeId x = g.input();
  NodeId c = g.add("c", Conv2dSpec{3, 2, 3, 1, 1}, {x});
  (void)g.add("dead", Conv2dSpec{2, 2, 3, 1, 1}, {c});
  g.set_output(g.add("s", SigmoidSpec{}, {c}));
  auto be = make_backend("reference");
  g.instantiate(*be, 1);
  StepContext ctx;
  const Tensor x1 = random_tensor({2, 3, 5, 6}, 1);
  auto& counters = nn_counters();
  (void)g.forward(ctx, x1);
  g.backward(ctx, random_tensor({2, 2, 5, 6}, 2));
  const uint64_t after_first = counters.buffers_allocated.load();
  for (int step = 0; step < 3; ++step) {
    (void)g.forward(ctx, x1);
    g.backward(ctx, random_tensor({2, 2, 5, 6}, 2));
  }
  EXPECT_EQ(counters.buffers_allocated.load(), after_first);
  const Tensor& y = g.forward(ctx, random_tensor({1, 3, 4, 4}, 3));  // new shape: replans
  EXPECT_EQ(y.dims(), (Dims{1, 2, 4, 4}));
  EXPECT_GT(counters.buffers_allocated.load(), after_first);
}

TEST(Graph, RejectsBadConstructionAndUnknownBackend) {
  Graph g;
  NodeId x = g.input();
  EXPECT_THROW((void)g.input(), Error);
  EXPECT_THROW((void)g.add("c", ReluSpec{}, {5}), Error);
  (void)g.add("c", ReluSpec{}, {x});
  EXPECT_THROW((void)g.add("c", ReluSpec{}, {x}), Error);
  try {
    (void)make_backend("tpu");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("onednn"), std::string::npos) << e.what();
  }
}

}  // namespace
