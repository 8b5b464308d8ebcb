// ctest-link: crackseg_nn
// oneDNN backend vs the reference backend, forward and backward, every layer, with the same
// stride / padding / dilation variants as the gradient checks; per-op tolerances
// (|got - ref| <= atol + rtol * |ref|). Also: fused conv+activation through the Graph, the
// dropout mask bit for bit, and a steady-state step that creates no primitive and
// allocates no buffer.
#include <gtest/gtest.h>

#include <omp.h>

#include <cstring>
#include <map>

#include "src/graph/graph.hpp"
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
  double atol = 1e-5, rtol = 1e-4;
};

const Dims kX{2, 3, 7, 9};

std::vector<Case> cases() {
  return {
      {"conv_k3_s1_p1", Conv2dSpec{3, 4, 3, 1, 1, 1}, {kX}},
      {"conv_k3_s2_p0", Conv2dSpec{3, 4, 3, 2, 0, 1}, {kX}},
      {"conv_k3_s2_p1_d2", Conv2dSpec{3, 2, 3, 2, 1, 2}, {kX}},
      {"conv_k1_wide", Conv2dSpec{3, 17, 1, 1, 0, 1}, {kX}},
      {"conv_k5_p2_nobias", Conv2dSpec{3, 2, 5, 1, 2, 1, false}, {kX}},
      {"conv_k2_s3_p1", Conv2dSpec{3, 3, 2, 3, 1, 1}, {kX}},
      {"conv_16to32", Conv2dSpec{16, 32, 3, 1, 1, 1}, {{2, 16, 6, 5}}},
      // 1 input channel, stride >= 2: input gradient as GEMM + col2im (conv_impl.hpp); the
      // few-channel strided ones stay on oneDNN (measured slower that way)
      {"conv_narrow_6to16_s2", Conv2dSpec{6, 16, 3, 2, 0, 1}, {{2, 6, 11, 9}}},
      {"conv_narrow_1to16_s2_p1", Conv2dSpec{1, 16, 3, 2, 1, 1}, {{2, 1, 8, 7}}},
      {"conv_narrow_1to4_k2_s3_p1", Conv2dSpec{1, 4, 2, 3, 1, 1}, {{2, 1, 7, 8}}},  // pixels no tap reaches
      {"conv_narrow_1to16_k3_s2_p0", Conv2dSpec{1, 16, 3, 2, 0, 1}, {{2, 1, 11, 9}}},
      {"conv_narrow_15to20_s2_nobias", Conv2dSpec{15, 20, 3, 2, 1, 1, false}, {{2, 15, 7, 6}}},
      // kernels/cpu/small_conv_dgrad.cpp (K*K*I <= 64): several row blocks with their halo,
      // 1-4 tap registers, 4-pixel groups and a tail, padding, stride 1
      {"conv_small_5to16_s2_blocks", Conv2dSpec{5, 16, 3, 2, 0, 1}, {{2, 5, 75, 19}}},
      {"conv_small_7to16_s2_p1", Conv2dSpec{7, 16, 3, 2, 1, 1}, {{2, 7, 37, 11}}},
      {"conv_small_2to24_s1_p1", Conv2dSpec{2, 24, 3, 1, 1, 1}, {{2, 2, 40, 13}}},
      {"convT_k2_s2", ConvTranspose2dSpec{3, 2, 2, 2, 0, 0}, {{2, 3, 4, 5}}},
      {"convT_k3_s2_p0", ConvTranspose2dSpec{3, 2, 3, 2, 0, 0}, {{2, 3, 4, 5}}},
      {"convT_k3_s2_p1_op1", ConvTranspose2dSpec{3, 4, 3, 2, 1, 1}, {{2, 3, 4, 5}}},
      {"convT_k3_s1_p1_nobias", ConvTranspose2dSpec{3, 2, 3, 1, 1, 0, false}, {{2, 3, 4, 5}}},
      {"convT_32to16", ConvTranspose2dSpec{32, 16, 2, 2, 0, 0}, {{2, 32, 3, 4}}},
      // Stride 2 runs as four stride-1 phase convolutions (conv_transpose_phases.cpp):
      // Spiral-Net's 16 -> 1 K3 p0 on odd sizes, U-Net's K2, paddings, output_padding,
      // phases with no tap (K1: bias only), a 1-pixel input (one phase has no output), and
      // specs that fall back to oneDNN's deconvolution (negative phase padding, stride 3).
      {"convT_s2_spiral_16to1", ConvTranspose2dSpec{16, 1, 3, 2, 0, 0}, {{2, 16, 7, 9}}},
      {"convT_s2_k3_p0_nobias", ConvTranspose2dSpec{5, 4, 3, 2, 0, 0, false}, {{2, 5, 6, 5}}},
      {"convT_s2_k3_p0_op1", ConvTranspose2dSpec{3, 2, 3, 2, 0, 1}, {{2, 3, 4, 5}}},
      {"convT_s2_k2_nobias", ConvTranspose2dSpec{4, 3, 2, 2, 0, 0, false}, {{2, 4, 5, 3}}},
      {"convT_s2_k4_p1", ConvTranspose2dSpec{3, 5, 4, 2, 1, 0}, {{2, 3, 5, 6}}},
      {"convT_s2_k5_p2_op1", ConvTranspose2dSpec{3, 4, 5, 2, 2, 1}, {{2, 3, 4, 5}}},
      {"convT_s2_k1", ConvTranspose2dSpec{3, 4, 1, 2, 0, 0}, {{2, 3, 4, 5}}},
      {"convT_s2_k1_op1_nobias", ConvTranspose2dSpec{3, 2, 1, 2, 0, 1, false}, {{2, 3, 4, 3}}},
      {"convT_s2_k3_p1_in1", ConvTranspose2dSpec{3, 2, 3, 2, 1, 0}, {{2, 3, 1, 4}}},
      // >= 16 output channels: the weight gradient runs as phase convolutions too.
      {"convT_s2_k3_p0_16out", ConvTranspose2dSpec{8, 16, 3, 2, 0, 0}, {{2, 8, 5, 6}}},
      // Large enough for the threaded weight shuffles (I x O > 4096) and the threaded bias
      // row sums (output rows x channels > 65536): a copy or an addition lost or doubled
      // between threads fails it.
      {"convT_s2_k3_96to64_threaded", ConvTranspose2dSpec{96, 64, 3, 2, 0, 0}, {{2, 96, 520, 1}}},
      {"convT_s2_k4_p1_16out_nobias", ConvTranspose2dSpec{4, 16, 4, 2, 1, 0, false}, {{2, 4, 5, 4}}},
      {"convT_s2_k5_p2_op1_20out", ConvTranspose2dSpec{3, 20, 5, 2, 2, 1}, {{2, 3, 4, 5}}},
      {"convT_s2_k1_op1_16out", ConvTranspose2dSpec{3, 16, 1, 2, 0, 1}, {{2, 3, 4, 3}}},
      {"convT_s2_k3_p1_in1_16out", ConvTranspose2dSpec{3, 16, 3, 2, 1, 0}, {{2, 3, 1, 4}}},
      {"convT_s2_k3_p2_fallback", ConvTranspose2dSpec{3, 2, 3, 2, 2, 0}, {{2, 3, 5, 6}}},
      {"convT_s3_k3_fallback", ConvTranspose2dSpec{3, 2, 3, 3, 1, 1}, {{2, 3, 4, 5}}},
      {"maxpool_k2_s2", MaxPool2dSpec{2, 2, 0}, {kX}, true, Fill::distinct},
      {"maxpool_k3_s2_p1", MaxPool2dSpec{3, 2, 1}, {kX}, true, Fill::distinct},
      {"maxpool_k3_s1", MaxPool2dSpec{3, 1, 0}, {kX}, true, Fill::distinct},
      {"batchnorm_train", BatchNorm2dSpec{3}, {kX}},
      {"batchnorm_eval", BatchNorm2dSpec{3}, {kX}, false},
      {"batchnorm_train_1ch", BatchNorm2dSpec{1}, {{2, 1, 7, 9}}},  // described as nchw (same bytes)
      // kernels/cpu/batchnorm_kernels.cpp runs channels in groups of 64/32/16 and a tail
      {"batchnorm_train_80ch", BatchNorm2dSpec{80}, {{2, 80, 3, 5}}},
      {"batchnorm_train_43ch", BatchNorm2dSpec{43}, {{2, 43, 4, 3}}},
      {"batchnorm_eval_43ch", BatchNorm2dSpec{43}, {{2, 43, 4, 3}}, false},
      {"batchnorm_eval_1ch", BatchNorm2dSpec{1}, {{2, 1, 7, 9}}, false},
      {"relu", ReluSpec{}, {kX}, true, Fill::away_from_zero},
      {"leaky_relu", LeakyReluSpec{0.1f}, {kX}, true, Fill::away_from_zero},
      {"sigmoid", SigmoidSpec{}, {kX}},
      {"softmax_channels", SoftmaxSpec{}, {kX}},
      {"softmax_2d", SoftmaxSpec{}, {{3, 5}}},
      {"dropout_train", DropoutSpec{0.3f}, {{2, 5, 7, 9}}, true, Fill::normal, 0, 1e-6},
      {"dropout_2d", DropoutSpec{0.5f}, {{3, 11}}, true, Fill::normal, 0, 1e-6},
      // AVX-512 mask rows: 37 channels (two 16-channel groups and a 5-channel tail), 1 channel
      // (16 pixels per register, a 41-pixel last tile); 65 and 221 pixels: several 60-pixel tiles
      {"dropout_train_37ch", DropoutSpec{0.3f}, {{2, 37, 5, 13}}, true, Fill::normal, 0, 1e-6},
      {"dropout_train_1ch", DropoutSpec{0.3f}, {{2, 1, 13, 17}}, true, Fill::normal, 0, 1e-6},
      {"dropout_eval", DropoutSpec{0.3f}, {kX}, false, Fill::normal, 0, 0},
      {"linear", LinearSpec{10, 4}, {{3, 10}}},
      {"linear_nobias", LinearSpec{70, 3, false}, {{2, 70}}},
      {"flatten", FlattenSpec{}, {kX}, true, Fill::normal, 0, 0},
      {"concat3", ConcatSpec{}, {kX, {2, 1, 7, 9}, {2, 2, 7, 9}}, true, Fill::normal, 0, 0},
      // 510 pixels: two 256-pixel tiles, the second partial; 1-, 16- and 3-channel parts
      {"concat_tiles", ConcatSpec{}, {{2, 1, 15, 17}, {2, 16, 15, 17}, {2, 1, 15, 17}, {2, 3, 15, 17}}, true,
       Fill::normal, 0, 0},
      // only 1-channel maps (Spiral-Net's concats: concat_maps.hpp, 16 pixels at a time): 7 and 16
      // maps, 510 pixels (a 254-pixel last tile: 15 groups of 16 and a 14-pixel tail)
      {"concat_maps7", ConcatSpec{}, std::vector<Dims>(7, Dims{2, 1, 15, 17}), true, Fill::normal, 0, 0},
      {"concat_maps16", ConcatSpec{}, std::vector<Dims>(16, Dims{2, 1, 15, 17}), true, Fill::normal, 0, 0},
      // 4,800 pixels x 7 maps: past the copy's OpenMP threshold (32,768 values), tiles over threads
      {"concat_maps7_threaded", ConcatSpec{}, std::vector<Dims>(7, Dims{2, 1, 40, 60}), true, Fill::normal, 0, 0},
      {"add3", AddSpec{}, {kX, kX, kX}},
  };
}

class OnednnVsReference : public ::testing::TestWithParam<Case> {};

struct LayerRun {
  Tensor out;
  std::vector<Tensor> din, grads, bufs;
};

LayerRun run_layer(const std::string& backend, const Case& c) {
  auto be = make_backend(backend);
  auto layer = be->make_layer(c.spec, "t." + c.label);
  StepContext ctx;
  ctx.training = c.training;
  ctx.seed = 77;
  ctx.epoch = 1;
  const std::vector<uint64_t> ids{12, 5, 900};
  ctx.sample_ids = std::span<const uint64_t>(ids).first(static_cast<std::size_t>(c.in[0][0]));
  std::vector<Tensor> in;
  std::vector<Dims> dims;
  for (std::size_t k = 0; k < c.in.size(); ++k)
    in.push_back(random_tensor(c.in[k], 100 + k, be->activation_format(), c.fill)), dims.push_back(c.in[k]);
  layer->plan(dims);
  randomize_params(*layer, 11);
  layer->params_changed();
  LayerRun r;
  // BN eval: give the running statistics a non-trivial state first (one training forward).
  if (std::holds_alternative<BatchNorm2dSpec>(c.spec) && !c.training) {
    StepContext t = ctx;
    t.training = true;
    (void)run_forward(*be, *layer, t, in);
  }
  r.out = run_forward(*be, *layer, ctx, in);
  const Tensor dout = random_tensor(r.out.dims(), 999, be->activation_format());
  std::vector<Tensor*> dptr;
  std::vector<const Tensor*> iptr;
  for (auto& t : in) r.din.push_back(Tensor::zeros(t.dims(), DType::f32, t.format())), iptr.push_back(&t);
  for (auto& t : r.din) dptr.push_back(&t);
  layer->backward(ctx, iptr, r.out, dout, dptr);
  layer->backward(ctx, iptr, r.out, dout, dptr);  // twice: parameter gradients accumulate
  for (Param* p : layer->params()) r.grads.push_back(p->grad.clone());
  for (auto& [name, t] : layer->buffers()) r.bufs.push_back(t->clone());
  return r;
}

TEST_P(OnednnVsReference, ForwardAndBackwardWithinTolerance) {
  const Case& c = GetParam();
  const LayerRun want = run_layer("reference", c), got = run_layer("onednn", c);
  std::string at;
  EXPECT_LE(tolerance_ratio(got.out, want.out, c.atol, c.rtol, &at), 1.0) << "out " << at;
  // Backward sums over more terms than forward: a 10x looser bound, still float-level.
  const double ba = std::max(10 * c.atol, 1e-5), br = c.rtol == 0 ? 1e-6 : 10 * c.rtol;
  for (std::size_t k = 0; k < want.din.size(); ++k)
    EXPECT_LE(tolerance_ratio(got.din[k], want.din[k], ba, br, &at), 1.0) << "din" << k << " " << at;
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (std::size_t k = 0; k < want.grads.size(); ++k)
    EXPECT_LE(tolerance_ratio(got.grads[k], want.grads[k], ba, br, &at), 1.0) << "grad" << k << " " << at;
  for (std::size_t k = 0; k < want.bufs.size(); ++k)
    EXPECT_LE(tolerance_ratio(got.bufs[k], want.bufs[k], 1e-6, 1e-5, &at), 1.0) << "buffer" << k << " " << at;
}

INSTANTIATE_TEST_SUITE_P(AllLayers, OnednnVsReference, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.label; });

// conv -> relu, convT -> leaky relu (fused on oneDNN), conv -> BN -> leaky (not fusable),
// pool, concat skip, sigmoid: the oneDNN graph (fusion on and off) vs the reference graph.
Graph mini_unet(bool fusion) {
  Graph g;
  g.set_fusion(fusion);
  NodeId x = g.input();
  NodeId c1 = g.add("enc.conv1", Conv2dSpec{3, 8, 3, 1, 1}, {x});
  NodeId r1 = g.add("enc.relu1", ReluSpec{}, {c1});
  NodeId c2 = g.add("enc.conv2", Conv2dSpec{8, 8, 3, 1, 1}, {r1});
  NodeId b2 = g.add("enc.bn2", BatchNorm2dSpec{8}, {c2});
  NodeId l2 = g.add("enc.act2", LeakyReluSpec{0.01f}, {b2});
  NodeId d2 = g.add("enc.drop2", DropoutSpec{0.2f}, {l2});
  NodeId p = g.add("pool", MaxPool2dSpec{2, 2, 0}, {d2});
  NodeId c3 = g.add("mid.conv", Conv2dSpec{8, 16, 3, 1, 1}, {p});
  NodeId r3 = g.add("mid.relu", ReluSpec{}, {c3});
  NodeId up = g.add("up", ConvTranspose2dSpec{16, 8, 2, 2}, {r3});
  NodeId ul = g.add("up.act", LeakyReluSpec{0.1f}, {up});
  NodeId cat = g.add("cat", ConcatSpec{}, {ul, d2});
  NodeId c4 = g.add("dec.conv", Conv2dSpec{16, 1, 1, 1, 0}, {cat});
  g.set_output(g.add("out", SigmoidSpec{}, {c4}));
  return g;
}

TEST(OnednnGraph, FusedAndUnfusedMatchReference) {
  const Tensor x = random_tensor({2, 3, 8, 10}, 1, Format::nchw);
  const Tensor dy = random_tensor({2, 1, 8, 10}, 2, Format::nchw);
  StepContext ctx;
  ctx.seed = 3;
  auto run_graph = [&](const std::string& backend, bool fusion, std::vector<Tensor>& grads) {
    auto be = make_backend(backend);
    Graph g = mini_unet(fusion);
    g.instantiate(*be, 42);
    Tensor y;
    for (int step = 0; step < 2; ++step) {  // second step sees updated running stats + weights
      g.zero_grad();
      y = g.forward(ctx, x).to_format(Format::nchw);
      g.backward(ctx, dy);
      if (step == 0)
        for (Param* p : g.params()) {
          auto v = p->value.span<float>();
          auto gr = p->grad.span<float>();
          for (std::size_t i = 0; i < v.size(); ++i) v[i] -= 0.01f * gr[i];
        }
    }
    grads.clear();
    for (Param* p : g.params()) grads.push_back(p->grad.clone());
    return y;
  };
  std::vector<Tensor> gref, gfused, gplain;
  const Tensor yref = run_graph("reference", false, gref);
  const Tensor yfused = run_graph("onednn", true, gfused);
  const Tensor yplain = run_graph("onednn", false, gplain);
  std::string at;
  EXPECT_LE(tolerance_ratio(yfused, yref, 1e-5, 1e-4, &at), 1.0) << at;
  EXPECT_LE(tolerance_ratio(yplain, yref, 1e-5, 1e-4, &at), 1.0) << at;
  ASSERT_EQ(gfused.size(), gref.size());
  for (std::size_t k = 0; k < gref.size(); ++k) {
    EXPECT_LE(tolerance_ratio(gfused[k], gref[k], 1e-4, 1e-3, &at), 1.0) << "param " << k << " " << at;
    EXPECT_LE(tolerance_ratio(gplain[k], gref[k], 1e-4, 1e-3, &at), 1.0) << "param " << k << " " << at;
  }
}

// Stride-2 transposed convs with a fused activation (the phase convolutions' post-op, and
// act(bias) for K1's tap-less phases; weight gradients as phase convolutions and, for the
// 2-channel output, oneDNN's), fusion on vs the reference graph.
TEST(OnednnGraph, StrideTwoTransposedConvFusedActivationMatchesReference) {
  const auto build = [] {
    Graph g;
    NodeId x = g.input();
    NodeId u1 = g.add("up1", ConvTranspose2dSpec{3, 16, 3, 2, 0, 0}, {x});
    NodeId a1 = g.add("up1.act", LeakyReluSpec{0.1f}, {u1});
    NodeId u2 = g.add("up2", ConvTranspose2dSpec{16, 16, 1, 2, 0, 1}, {a1});
    NodeId a2 = g.add("up2.act", ReluSpec{}, {u2});
    NodeId u3 = g.add("up3", ConvTranspose2dSpec{16, 2, 3, 2, 1, 1}, {a2});
    NodeId a3 = g.add("up3.act", ReluSpec{}, {u3});
    g.set_output(g.add("out", Conv2dSpec{2, 1, 1, 1, 0}, {a3}));
    return g;
  };
  const Tensor x = random_tensor({2, 3, 5, 4}, 1, Format::nchw);
  const Tensor dy = random_tensor({2, 1, 44, 36}, 2, Format::nchw);
  StepContext ctx;
  auto run_graph = [&](const std::string& backend, std::vector<Tensor>& grads, std::vector<std::string>& kinds) {
    auto be = make_backend(backend);
    Graph g = build();
    g.instantiate(*be, 42);
    for (Param* p : g.params())  // non-zero biases: the bias-only phases must show them
      if (p->name.ends_with(".bias")) p->value.fill_(p->name == "up2.bias" ? 0.3f : -0.2f);
    g.set_profiling(true);
    g.zero_grad();
    const Tensor xin = x.to_format(be->activation_format()), dyin = dy.to_format(be->activation_format());
    const Tensor y = g.forward(ctx, xin).to_format(Format::nchw);
    g.backward(ctx, dyin);
    for (Param* p : g.params()) grads.push_back(p->grad.clone());
    for (const auto& t : g.profile()) kinds.push_back(t.kind);
    // Steady state (phase and col2im paths): no primitive, no buffer.
    const uint64_t prims = nn_counters().primitives_created.load(), bufs = nn_counters().buffers_allocated.load();
    for (int i = 0; i < 2; ++i) {
      g.zero_grad();
      (void)g.forward(ctx, xin);
      g.backward(ctx, dyin);
    }
    if (backend == "onednn") {
      EXPECT_EQ(nn_counters().primitives_created.load(), prims);
      EXPECT_EQ(nn_counters().buffers_allocated.load(), bufs);
    }
    return y;
  };
  std::vector<Tensor> gref, gdnn;
  std::vector<std::string> kref, kdnn;
  const Tensor yref = run_graph("reference", gref, kref), ydnn = run_graph("onednn", gdnn, kdnn);
  EXPECT_NE(std::find(kdnn.begin(), kdnn.end(), "conv_transpose2d+leaky_relu"), kdnn.end());
  EXPECT_NE(std::find(kdnn.begin(), kdnn.end(), "conv_transpose2d+relu"), kdnn.end());
  std::string at;
  EXPECT_LE(tolerance_ratio(ydnn, yref, 1e-5, 1e-4, &at), 1.0) << at;
  ASSERT_EQ(gdnn.size(), gref.size());
  for (std::size_t k = 0; k < gref.size(); ++k)
    EXPECT_LE(tolerance_ratio(gdnn[k], gref[k], 1e-4, 1e-3, &at), 1.0) << "param " << k << " " << at;
}

TEST(OnednnGraph, SteadyStateCreatesNoPrimitiveAndAllocatesNoBuffer) {
  auto be = make_backend("onednn");
  Graph g = mini_unet(true);
  g.instantiate(*be, 1);
  StepContext ctx;
  const Tensor x = random_tensor({2, 3, 8, 10}, 1, Format::nhwc);
  const Tensor dy = random_tensor({2, 1, 8, 10}, 2, Format::nhwc);
  auto step = [&] {
    g.zero_grad();
    (void)g.forward(ctx, x);
    g.backward(ctx, dy);
    for (Param* p : g.params()) p->value.span<float>()[0] += 1e-3f;  // an optimizer's write
  };
  step();
  const uint64_t prims = nn_counters().primitives_created.load(), bufs = nn_counters().buffers_allocated.load();
  EXPECT_GT(prims, 10u);
  for (int i = 0; i < 3; ++i) step();
  ctx.training = false;
  (void)g.forward(ctx, x);
  EXPECT_EQ(nn_counters().primitives_created.load(), prims);
  EXPECT_EQ(nn_counters().buffers_allocated.load(), bufs);
}

TEST(OnednnGraph, FusionPassFusesOnlyConvFollowedBySoleActivation) {
  auto be = make_backend("onednn");
  Graph g = mini_unet(true);
  g.instantiate(*be, 1);
  g.set_profiling(true);
  StepContext ctx;
  (void)g.forward(ctx, random_tensor({1, 3, 8, 10}, 1, Format::nhwc));
  std::map<std::string, std::string> kind;
  for (const auto& t : g.profile()) kind[t.name] = t.kind;
  EXPECT_EQ(kind["enc.conv1"], "conv2d+relu");
  EXPECT_EQ(kind["mid.conv"], "conv2d+relu");
  EXPECT_EQ(kind["up"], "conv_transpose2d+leaky_relu");
  EXPECT_EQ(kind["enc.conv2"], "conv2d");  // batchnorm follows: nothing to fuse
  EXPECT_EQ(kind["dec.conv"], "conv2d");   // sigmoid is not a post-op here
  auto ref = make_backend("reference");
  Graph r = mini_unet(true);
  r.instantiate(*ref, 1);
  r.set_profiling(true);
  (void)r.forward(ctx, random_tensor({1, 3, 8, 10}, 1, Format::nchw));
  for (const auto& t : r.profile()) EXPECT_EQ(t.kind.find('+'), std::string::npos) << t.name;  // reference: never
}

TEST(OnednnGraph, WeightChangesReachTheBlockedCopy) {
  // After an update through params(), the next forward must use the new weights.
  auto be = make_backend("onednn");
  Graph g;
  NodeId x = g.input();
  g.set_output(g.add("c", Conv2dSpec{16, 16, 3, 1, 1}, {x}));
  g.instantiate(*be, 1);
  StepContext ctx;
  const Tensor in = random_tensor({1, 16, 5, 5}, 4, Format::nhwc);
  const Tensor y0 = g.forward(ctx, in).clone();
  for (Param* p : g.params())
    if (p->name == "c.bias") p->value.fill_(1.0f);
    else p->value.zero_();
  const Tensor y1 = g.forward(ctx, in);
  for (float v : y1.span<float>()) ASSERT_EQ(v, 1.0f);
  (void)y0;
}

}  // namespace

namespace {

// One training step of a graph on oneDNN for the plan tests below: the bytes its plan
// allocates (the first forward plans), its output and every parameter gradient; with
// `again`, a second forward after the backward (a plan reused).
struct PlanRun {
  uint64_t bytes = 0;
  Tensor y;
  std::vector<Tensor> grads;
};
PlanRun run_plan(Graph g, const StepContext& ctx, const Tensor& x, uint64_t dy_seed, bool again = false) {
  auto be = make_backend("onednn");
  g.instantiate(*be, 42);
  PlanRun o;
  const uint64_t before = nn_counters().bytes_allocated.load();
  o.y = g.forward(ctx, x).to_format(Format::nchw);
  o.bytes = nn_counters().bytes_allocated.load() - before;
  g.backward(ctx, random_tensor(o.y.dims(), dy_seed, Format::nchw));
  if (again) o.y = g.forward(ctx, x).to_format(Format::nchw);
  for (Param* p : g.params()) o.grads.push_back(p->grad.clone());
  return o;
}
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

// Fused batchnorm + activation (Graph fusion): batchnorm -> LeakyReLU runs as one layer
// writing act(bn(x)) into one buffer, so the fused plan allocates exactly one batchnorm output
// fewer than the unfused one (batchnorm, then the activation in place), and the numbers are
// the same bits, in training and in eval mode (running statistics; eval backward). With a
// second reader of the batchnorm output (a skip into a concat) nothing fuses or shares, and
// both plans allocate alike.
TEST(OnednnGraph, InPlaceActivationAfterBatchnorm) {
  const Dims xd{2, 3, 8, 10};
  const Tensor x = random_tensor(xd, 1, Format::nchw);
  const auto build = [](bool fusion, bool skip) {
    Graph g;
    g.set_fusion(fusion);
    NodeId c1 = g.add("c1", Conv2dSpec{3, 8, 3, 1, 1}, {g.input()});
    NodeId b1 = g.add("bn", BatchNorm2dSpec{8}, {c1});
    NodeId a1 = g.add("act", LeakyReluSpec{0.1f}, {b1});
    NodeId last = skip ? g.add("cat", ConcatSpec{}, {a1, b1}) : a1;
    g.set_output(g.add("c2", Conv2dSpec{skip ? 16 : 8, 1, 3, 1, 1}, {last}));
    return g;
  };
  StepContext ctx;
  using Out = PlanRun;
  const auto run = [&](bool fusion, bool skip) { return run_plan(build(fusion, skip), ctx, x, 2); };
  const uint64_t bn_out_bytes = 2 * 8 * 8 * 10 * sizeof(float);
  const Out fused = run(true, false), plain = run(false, false);
  EXPECT_EQ(plain.bytes - fused.bytes, bn_out_bytes);
  EXPECT_TRUE(same_bits(fused.y, plain.y));
  ASSERT_EQ(fused.grads.size(), plain.grads.size());
  for (std::size_t k = 0; k < fused.grads.size(); ++k) EXPECT_TRUE(same_bits(fused.grads[k], plain.grads[k])) << k;
  StepContext eval;
  eval.training = false;
  const Out fused_eval = run_plan(build(true, false), eval, x, 2), plain_eval = run_plan(build(false, false), eval, x, 2);
  EXPECT_TRUE(same_bits(fused_eval.y, plain_eval.y));
  EXPECT_FALSE(same_bits(fused_eval.y, fused.y));  // eval really used the running statistics
  for (std::size_t k = 0; k < fused_eval.grads.size(); ++k)
    EXPECT_TRUE(same_bits(fused_eval.grads[k], plain_eval.grads[k])) << "eval grad " << k;
  const Out fused_skip = run(true, true), plain_skip = run(false, true);
  EXPECT_EQ(plain_skip.bytes, fused_skip.bytes);
  EXPECT_TRUE(same_bits(fused_skip.y, plain_skip.y));
}

// In-place dropout (Graph plan): conv -> BN -> LeakyReLU -> dropout keeps one buffer for the
// three (LeakyReLU over BN, dropout over LeakyReLU: its backward needs only the sign of its
// output, which dropout keeps wherever the gradient is nonzero). The fused plan allocates
// exactly two activation buffers fewer and gives the same bits: output, every parameter
// gradient and the input gradient's effect on the first conv. ReLU -> dropout shares too;
// sigmoid -> dropout must not (the logistic backward reads its exact output).
TEST(OnednnGraph, InPlaceDropoutAfterActivation) {
  const Dims xd{2, 3, 9, 10};
  const Tensor x = random_tensor(xd, 3, Format::nchw);
  enum class Act { leaky, relu, sigmoid };
  const auto build = [](bool fusion, Act act) {
    Graph g;
    g.set_fusion(fusion);
    NodeId c1 = g.add("c1", Conv2dSpec{3, 8, 3, 1, 1}, {g.input()});
    NodeId b1 = g.add("bn", BatchNorm2dSpec{8}, {c1});
    NodeId a1 = act == Act::leaky  ? g.add("act", LeakyReluSpec{0.1f}, {b1})
                : act == Act::relu ? g.add("act", ReluSpec{}, {b1})
                                   : g.add("act", SigmoidSpec{}, {b1});
    NodeId d1 = g.add("drop", DropoutSpec{.p = 0.5f}, {a1});
    g.set_output(g.add("c2", Conv2dSpec{8, 1, 3, 1, 1}, {d1}));
    return g;
  };
  const std::vector<uint64_t> ids{7, 11};
  StepContext ctx;
  ctx.training = true;
  ctx.seed = 5;
  ctx.sample_ids = ids;
  using Out = PlanRun;
  const auto run = [&](bool fusion, Act act) { return run_plan(build(fusion, act), ctx, x, 4); };
  const uint64_t act_bytes = 2 * 8 * 9 * 10 * sizeof(float);
  for (Act act : {Act::leaky, Act::relu, Act::sigmoid}) {
    const Out fused = run(true, act), plain = run(false, act);
    // leaky / relu: BN -> act in place and act -> dropout in place; sigmoid: BN -> sigmoid only
    const uint64_t saved = act == Act::sigmoid ? act_bytes : 2 * act_bytes;
    EXPECT_EQ(plain.bytes - fused.bytes, saved) << static_cast<int>(act);
    EXPECT_TRUE(same_bits(fused.y, plain.y)) << static_cast<int>(act);
    ASSERT_EQ(fused.grads.size(), plain.grads.size());
    for (std::size_t k = 0; k < fused.grads.size(); ++k)
      EXPECT_TRUE(same_bits(fused.grads[k], plain.grads[k])) << static_cast<int>(act) << " grad " << k;
    // the dropout must have dropped something and kept something, or the case tests nothing
    std::size_t zeros = 0;
    for (int64_t i = 0; i < fused.grads[0].numel(); ++i) zeros += fused.grads[0].data<float>()[i] == 0.0f;
    EXPECT_LT(zeros, static_cast<std::size_t>(fused.grads[0].numel())) << "conv1 weight gradient all zero";
  }
}

// Dropout fused into batchnorm (Graph fusion, Layer::fuse_dropout): conv -> BN [-> ReLU /
// LeakyReLU] -> dropout runs as one batchnorm layer that draws the dropout node's own mask
// and applies it inside its passes. The fused plan must give the unfused plan's bits (output,
// every parameter gradient, a second forward on the reused plan) for channel counts that take
// every kernel path (1; 16 + a tail of 8 and 5; 64) and rows that straddle the mask's 60-pixel
// tiles (W = 13, 7); eval mode must apply no dropout; and the fusion must really happen.
TEST(OnednnGraph, DropoutFusedIntoBatchnorm) {
  enum class Act { none, relu, leaky };
  struct Case {
    Dims x;
    int64_t C;
  };
  for (const Case& k : {Case{{2, 3, 11, 13}, 29}, Case{{3, 3, 9, 7}, 1}, Case{{2, 3, 8, 13}, 64}})
    for (const Act act : {Act::none, Act::relu, Act::leaky}) {
      SCOPED_TRACE("C = " + std::to_string(k.C) + " act " + std::to_string(static_cast<int>(act)));
      const auto build = [&](bool fusion, bool dropout = true) {
        Graph g;
        g.set_fusion(fusion);
        NodeId c1 = g.add("c1", Conv2dSpec{3, k.C, 3, 1, 1}, {g.input()});
        NodeId a = g.add("bn", BatchNorm2dSpec{k.C}, {c1});
        if (act == Act::relu) a = g.add("act", ReluSpec{}, {a});
        if (act == Act::leaky) a = g.add("act", LeakyReluSpec{0.1f}, {a});
        if (dropout) a = g.add("unit.drop", DropoutSpec{.p = 0.3f}, {a});
        g.set_output(g.add("c2", Conv2dSpec{k.C, 1, 3, 1, 1}, {a}));
        return g;
      };
      const Tensor x = random_tensor(k.x, 9, Format::nchw);
      const std::vector<uint64_t> ids{101, 7, 55};
      StepContext ctx;
      ctx.training = true;
      ctx.seed = 77;
      ctx.epoch = 3;
      ctx.sample_ids = ids;
      const PlanRun fused = run_plan(build(true), ctx, x, 8, true), plain = run_plan(build(false), ctx, x, 8, true);
      EXPECT_TRUE(same_bits(fused.y, plain.y));
      ASSERT_EQ(fused.grads.size(), plain.grads.size());
      for (std::size_t i = 0; i < fused.grads.size(); ++i) EXPECT_TRUE(same_bits(fused.grads[i], plain.grads[i])) << i;
      // the fusion happened (the profile names the fused kinds) ...
      Graph g = build(true);
      auto be = make_backend("onednn");
      g.instantiate(*be, 42);
      g.set_profiling(true);
      const Tensor y_train = g.forward(ctx, x).to_format(Format::nchw);
      bool fused_kind = false;
      for (const auto& t : g.profile())
        if (t.name == "bn") fused_kind = t.kind.ends_with("+dropout");
      EXPECT_TRUE(fused_kind);
      // ... and the mask dropped something: a plan without dropout differs
      Graph nodrop = build(true, false);
      auto be2 = make_backend("onednn");
      nodrop.instantiate(*be2, 42);
      EXPECT_FALSE(same_bits(y_train, nodrop.forward(ctx, x).to_format(Format::nchw)));
      // eval: no dropout, and the same bits fused or not
      StepContext eval = ctx;
      eval.training = false;
      const PlanRun fused_eval = run_plan(build(true), eval, x, 8), plain_eval = run_plan(build(false), eval, x, 8);
      EXPECT_TRUE(same_bits(fused_eval.y, plain_eval.y));
      for (std::size_t i = 0; i < fused_eval.grads.size(); ++i)
        EXPECT_TRUE(same_bits(fused_eval.grads[i], plain_eval.grads[i])) << "eval grad " << i;
    }
}

// Concat inputs written in place (Graph plan, part of fusion): a stride-2 transposed conv
// whose only reader is a concat writes its output straight into the concat's channels (the
// U-Net decoder's upsampled tensor), first or second, so the fused plan allocates exactly
// that tensor fewer and gives the same bits: output and every parameter gradient. With 8
// output channels (col2im path), a fused activation, or a second reader it must not.
TEST(OnednnGraph, TransposedConvWritesIntoConcat) {
  if (const char* e = std::getenv("CRACKSEG_CONVT_PHASES"); e && std::string(e) == "0")
    GTEST_SKIP() << "CRACKSEG_CONVT_PHASES=0: oneDNN's own deconvolution, which writes only its own tensor";
  const Dims xd{2, 3, 6, 6};
  const Tensor x = random_tensor(xd, 5, Format::nchw);
  enum class Up { first, second, narrow, activated, two_readers };
  const auto build = [](bool fusion, Up v) {
    Graph g;
    g.set_fusion(fusion);
    const int64_t uc = v == Up::narrow ? 8 : 16;
    NodeId c1 = g.add("c1", Conv2dSpec{3, 24, 3, 1, 1}, {g.input()});
    NodeId b1 = g.add("bn", BatchNorm2dSpec{24}, {c1});
    NodeId a1 = g.add("act", LeakyReluSpec{0.1f}, {b1});
    NodeId pool = g.add("pool", MaxPool2dSpec{2, 2, 0}, {a1});
    NodeId up = g.add("up", ConvTranspose2dSpec{24, uc, 2, 2, 0, 0}, {pool});
    NodeId upo = v == Up::activated ? g.add("up.act", ReluSpec{}, {up}) : up;
    NodeId cat = v == Up::second ? g.add("cat", ConcatSpec{}, {a1, upo}) : g.add("cat", ConcatSpec{}, {upo, a1});
    NodeId last = g.add("c2", Conv2dSpec{24 + uc, 1, 3, 1, 1}, {cat});
    if (v == Up::two_readers) last = g.add("sum", AddSpec{}, {last, g.add("side", Conv2dSpec{uc, 1, 1, 1, 0}, {upo})});
    g.set_output(last);
    return g;
  };
  StepContext ctx;
  using Out = PlanRun;
  const auto run = [&](bool fusion, Up v) { return run_plan(build(fusion, v), ctx, x, 6, true); };
  const uint64_t act_bytes = 2 * 24 * 6 * 6 * sizeof(float);  // BN -> LeakyReLU in place (both)
  for (Up v : {Up::first, Up::second, Up::narrow, Up::activated, Up::two_readers}) {
    const Out fused = run(true, v), plain = run(false, v);
    const uint64_t up_bytes = 2 * 16 * 6 * 6 * sizeof(float);
    const bool into = v == Up::first || v == Up::second;
    // activated: the ReLU fuses into the transposed conv, which changes the gradient plan
    // too; that the layer refuses the concat is checked directly below
    if (v != Up::activated) {
      EXPECT_EQ(plain.bytes - fused.bytes, act_bytes + (into ? up_bytes : 0)) << static_cast<int>(v);
    }
    EXPECT_TRUE(same_bits(fused.y, plain.y)) << static_cast<int>(v);
    ASSERT_EQ(fused.grads.size(), plain.grads.size());
    for (std::size_t k = 0; k < fused.grads.size(); ++k)
      EXPECT_TRUE(same_bits(fused.grads[k], plain.grads[k])) << static_cast<int>(v) << " grad " << k;
  }
  auto be = make_backend("onednn");
  const std::vector<Dims> in{{2, 24, 3, 3}};
  for (bool act : {false, true}) {
    auto l = be->make_layer(ConvTranspose2dSpec{24, 16, 2, 2, 0, 0}, "up");
    if (act) {
      ASSERT_TRUE(l->fuse_activation(ReluSpec{}));
    }
    l->plan(in);
    EXPECT_EQ(l->write_output_as_channels(8, 40), !act) << act;  // its backward would read y
    EXPECT_FALSE(l->write_output_as_channels(30, 40));           // does not fit
  }
  auto narrow = be->make_layer(ConvTranspose2dSpec{24, 8, 2, 2, 0, 0}, "up8");
  narrow->plan(in);
  EXPECT_FALSE(narrow->write_output_as_channels(0, 40));  // col2im path
}

// The few-input-channel input gradient (small_conv_dgrad.cpp) sums each element in a fixed
// order: 1 and 3 threads give the same bits (row blocks are spread over threads differently).
TEST(OnednnLayers, SmallInputChannelGradientIsThreadCountInvariant) {
  const Dims d{3, 6, 83, 21};
  std::vector<Tensor> dx;
  const int saved = omp_get_max_threads();
  for (const int threads : {1, 3}) {
    omp_set_num_threads(threads);
    auto be = make_backend("onednn");
    auto layer = be->make_layer(Conv2dSpec{6, 16, 3, 2, 0, 1}, "t.small");
    const Tensor x = random_tensor(d, 3, be->activation_format());
    layer->plan(std::vector<Dims>{d});
    randomize_params(*layer, 4);
    layer->params_changed();
    StepContext ctx;
    ctx.training = true;
    const Tensor out = run_forward(*be, *layer, ctx, {x});
    const Tensor dout = random_tensor(out.dims(), 5, be->activation_format());
    Tensor din = Tensor::empty(d, DType::f32, be->activation_format());
    const Tensor* ip = &x;
    Tensor* dp = &din;
    layer->backward(ctx, std::span<const Tensor* const>(&ip, 1), out, dout, std::span<Tensor* const>(&dp, 1));
    dx.push_back(din);
  }
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(dx[0].raw(), dx[1].raw(), dx[0].nbytes()), 0);
}
