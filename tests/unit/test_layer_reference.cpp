// ctest-link: crackseg_nn
// Reference layers against hand-derived results (the gradient checks prove backward
// matches forward; these prove forward means what the spec says).
#include <gtest/gtest.h>

#include "src/layers/dropout_mask.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

struct One {
  std::unique_ptr<Backend> be;
  std::unique_ptr<Layer> layer;
  One(const LayerSpec& s, const std::string& fmt = "reference", const std::string& name = "l")
      : be(make_backend(fmt)), layer(be->make_layer(s, name)) {}
  Tensor run(const std::vector<Tensor>& in, const StepContext& ctx = {}) {
    std::vector<Dims> d;
    for (auto& t : in) d.push_back(t.dims());
    layer->plan(d);
    return run_forward(*be, *layer, ctx, in);
  }
};

TEST(ReferenceLayers, ConvWithCentredDeltaKernelIsIdentityPlusBias) {
  One conv(Conv2dSpec{2, 2, 3, 1, 1});
  auto ps = conv.layer->params();
  ps[0]->value.zero_();
  for (int o = 0; o < 2; ++o) ps[0]->value.data<float>()[((o * 2 + o) * 3 + 1) * 3 + 1] = 1.0f;  // w[o][o][1][1]
  ps[1]->value.data<float>()[0] = 0.5f;
  ps[1]->value.data<float>()[1] = -1.0f;
  const Tensor x = random_tensor({1, 2, 4, 5}, 3);
  const Tensor y = conv.run({x});
  for (int c = 0; c < 2; ++c)
    for (int h = 0; h < 4; ++h)
      for (int w = 0; w < 5; ++w) EXPECT_FLOAT_EQ(y.at(0, c, h, w), x.at(0, c, h, w) + (c ? -1.0f : 0.5f));
}

TEST(ReferenceLayers, ConvStrideDilationPickTheDocumentedTaps) {
  // 1 channel, kernel 2, dilation 2, stride 2, no padding on a 1x5 row of 0..4 in 5x5:
  // output (y, x) = in[2y][2x] * w00 + in[2y][2x+2] * w01 + in[2y+2][2x] * w10 + in[2y+2][2x+2] * w11.
  One conv(Conv2dSpec{1, 1, 2, 2, 0, 2, false});
  float* w = conv.layer->params()[0]->value.data<float>();
  w[0] = 1, w[1] = 10, w[2] = 100, w[3] = 1000;
  Tensor x = Tensor::empty({1, 1, 5, 5}, DType::f32, Format::nchw);
  for (int i = 0; i < 25; ++i) x.data<float>()[i] = static_cast<float>(i);
  const Tensor y = conv.run({x});
  ASSERT_EQ(y.dims(), (Dims{1, 1, 2, 2}));
  auto in = [&](int r, int c) { return static_cast<float>(r * 5 + c); };
  for (int oy = 0; oy < 2; ++oy)
    for (int ox = 0; ox < 2; ++ox)
      EXPECT_FLOAT_EQ(y.at(0, 0, oy, ox), in(2 * oy, 2 * ox) + 10 * in(2 * oy, 2 * ox + 2) +
                                              100 * in(2 * oy + 2, 2 * ox) + 1000 * in(2 * oy + 2, 2 * ox + 2));
}

TEST(ReferenceLayers, TransposedConvK2S2PlacesEachTapInItsBlock) {
  // weight (I=1, O=1, 2, 2) = [[1, 2], [3, 4]]: input pixel v becomes [[v, 2v], [3v, 4v]].
  One t(ConvTranspose2dSpec{1, 1, 2, 2, 0, 0, false});
  float* w = t.layer->params()[0]->value.data<float>();
  w[0] = 1, w[1] = 2, w[2] = 3, w[3] = 4;
  const Tensor x = random_tensor({1, 1, 2, 3}, 4);
  const Tensor y = t.run({x});
  ASSERT_EQ(y.dims(), (Dims{1, 1, 4, 6}));
  for (int h = 0; h < 4; ++h)
    for (int ww = 0; ww < 6; ++ww) EXPECT_FLOAT_EQ(y.at(0, 0, h, ww), x.at(0, 0, h / 2, ww / 2) * w[(h % 2) * 2 + ww % 2]);
}

TEST(ReferenceLayers, MaxPoolPaddingNeverWins) {
  One p(MaxPool2dSpec{3, 2, 1});
  Tensor x = Tensor::empty({1, 1, 3, 3}, DType::f32, Format::nchw);
  x.fill_(-5.0f);
  x.at(0, 0, 2, 2) = -1.0f;
  const Tensor y = p.run({x});
  ASSERT_EQ(y.dims(), (Dims{1, 1, 2, 2}));
  EXPECT_EQ(y.at(0, 0, 0, 0), -5.0f);
  EXPECT_EQ(y.at(0, 0, 1, 1), -1.0f);
}

TEST(ReferenceLayers, BatchNormNormalisesPerChannelAndUpdatesRunningStatsUnbiased) {
  One bn(BatchNorm2dSpec{2, 1e-5f, 0.25f}, "reference-nhwc");
  bn.layer->params()[0]->value.fill_(1.0f);  // scale 1, shift 0 (as Graph::instantiate sets)
  const Tensor x = random_tensor({3, 2, 4, 5}, 6, Format::nhwc);
  StepContext ctx;
  const Tensor y = bn.run({x}, ctx);
  const double M = 60;
  for (int c = 0; c < 2; ++c) {
    double s = 0, s2 = 0, xs = 0, xs2 = 0;
    for (int n = 0; n < 3; ++n)
      for (int h = 0; h < 4; ++h)
        for (int w = 0; w < 5; ++w) {
          s += y.at(n, c, h, w), s2 += double(y.at(n, c, h, w)) * y.at(n, c, h, w);
          xs += x.at(n, c, h, w), xs2 += double(x.at(n, c, h, w)) * x.at(n, c, h, w);
        }
    EXPECT_NEAR(s / M, 0.0, 1e-6);
    const double var = xs2 / M - (xs / M) * (xs / M);
    EXPECT_NEAR(s2 / M, var / (var + 1e-5), 1e-5);
    auto bufs = bn.layer->buffers();
    EXPECT_NEAR(bufs[0].second->data<float>()[c], 0.25 * xs / M, 1e-6);
    EXPECT_NEAR(bufs[1].second->data<float>()[c], 0.75 + 0.25 * var * M / (M - 1), 1e-5);
  }
  ctx.training = false;  // eval: running statistics, output differs from the training one
  const Tensor ye = bn.run({x}, ctx);
  EXPECT_NE(ye.at(0, 0, 0, 0), y.at(0, 0, 0, 0));
}

TEST(ReferenceLayers, DropoutMaskDependsOnSampleNotOnBatchOrFormat) {
  const float p = 0.4f;
  One d1(DropoutSpec{p}, "reference", "enc1.drop"), d2(DropoutSpec{p}, "reference-nhwc", "enc1.drop");
  const Tensor x = random_tensor({2, 3, 8, 8}, 7);
  const std::vector<uint64_t> ids{41, 17};
  StepContext ctx;
  ctx.seed = 126, ctx.epoch = 3, ctx.sample_ids = ids;
  const Tensor y = d1.run({x}, ctx);
  // The same sample alone in a batch, other backend format: identical values.
  const std::vector<uint64_t> one{17};
  StepContext ctx1 = ctx;
  ctx1.sample_ids = one;
  const Tensor x1 = x.slice0(1, 2).to_format(Format::nhwc);
  const Tensor y1 = d2.run({x1}, ctx1);
  int dropped = 0;
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 8; ++h)
      for (int w = 0; w < 8; ++w) {
        EXPECT_EQ(y1.at(0, c, h, w), y.at(1, c, h, w));
        const bool drop = dropout_dropped(ctx, 17, name_salt("enc1.drop"), static_cast<uint64_t>((c * 8 + h) * 8 + w), p);
        EXPECT_FLOAT_EQ(y.at(1, c, h, w), drop ? 0.0f : x.at(1, c, h, w) / (1 - p));
        dropped += drop;
      }
  EXPECT_GT(dropped, 50);  // 192 elements at p = 0.4: 77 expected
  EXPECT_LT(dropped, 105);
  ctx.training = false;
  const Tensor ye = d1.run({x}, ctx);
  EXPECT_EQ(0, std::memcmp(ye.raw(), x.raw(), x.nbytes()));
}

TEST(ReferenceLayers, SoftmaxSumsToOneAndFlattenIsChwOrder) {
  One s(SoftmaxSpec{}, "reference-nhwc");
  const Tensor y = s.run({random_tensor({2, 4, 3, 3}, 8, Format::nhwc)});
  for (int n = 0; n < 2; ++n)
    for (int h = 0; h < 3; ++h) {
      double sum = 0;
      for (int c = 0; c < 4; ++c) sum += y.at(n, c, h, 1);
      EXPECT_NEAR(sum, 1.0, 1e-6);
    }
  One f(FlattenSpec{}, "reference-nhwc");
  const Tensor x = random_tensor({2, 3, 2, 5}, 9, Format::nhwc);
  const Tensor fl = f.run({x});
  ASSERT_EQ(fl.dims(), (Dims{2, 30}));
  const Tensor xn = x.to_format(Format::nchw);
  EXPECT_EQ(0, std::memcmp(fl.raw(), xn.raw(), xn.nbytes()));
}

}  // namespace
