// ctest-link: crackseg_nn
// train.conv_algorithm = "winograd" on the oneDNN backend (conv_impl.hpp): a 3x3 stride-1
// convolution runs oneDNN's Winograd kernels between nhwc <-> blocked reorders. Forward, input
// gradient, weight and bias gradients agree with the reference backend (double) to Winograd's
// rounding, with and without a fused ReLU; the layer really took the Winograd path (the
// backend's arithmetic summary counts it) and its numbers are not the direct ones; shapes
// without a Winograd kernel run direct and are counted; other backends refuse the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/dnnl_common.hpp"
#include "src/core/error.hpp"
#include "src/graph/backend.hpp"
#include "src/graph/graph.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

struct ConvRun {
  Tensor y, dx;
  std::vector<Tensor> grads;
  std::string summary;
};

// One forward and backward of a conv layer on `backend` with `algorithm` (layer level: the
// input gradient is checked too); parameters and inputs from fixed seeds.
ConvRun conv_run(const std::string& backend, const std::string& algorithm, const Conv2dSpec& spec, const Dims& xd) {
  auto be = make_backend(backend);
  be->set_conv_algorithm(algorithm);
  auto layer = be->make_layer(spec, "t.conv");
  const std::vector<Dims> dims{xd};
  layer->plan(dims);
  randomize_params(*layer, 11);
  layer->params_changed();
  StepContext ctx;
  ctx.training = true;
  const std::vector<Tensor> in{random_tensor(xd, 3, be->activation_format())};
  ConvRun r;
  r.y = run_forward(*be, *layer, ctx, in);
  const Tensor dy = random_tensor(r.y.dims(), 4, be->activation_format());
  r.dx = Tensor::zeros(xd, DType::f32, in[0].format());
  const Tensor* ip = &in[0];
  Tensor* dp = &r.dx;
  layer->backward(ctx, std::span<const Tensor* const>(&ip, 1), r.y, dy, std::span<Tensor* const>(&dp, 1));
  for (Param* p : layer->params()) r.grads.push_back(p->grad.clone());
  r.y = r.y.to_format(Format::nchw), r.dx = r.dx.to_format(Format::nchw);
  r.summary = be->precision_summary();
  return r;
}

// The same conv followed by a ReLU through a Graph (the ReLU fuses as a post-op): output and
// parameter gradients.
ConvRun fused_run(const std::string& backend, const std::string& algorithm, const Conv2dSpec& spec, const Dims& xd) {
  auto be = make_backend(backend);
  be->set_conv_algorithm(algorithm);
  Graph g;
  g.set_output(g.add("r", ReluSpec{}, {g.add("c", spec, {g.input()})}));
  g.instantiate(*be, 11);
  StepContext ctx;
  ctx.training = true;
  ConvRun r;
  r.y = g.forward(ctx, random_tensor(xd, 3, Format::nchw)).to_format(Format::nchw);
  g.backward(ctx, random_tensor(r.y.dims(), 4, Format::nchw));
  for (Param* p : g.params()) r.grads.push_back(p->grad.clone());
  r.summary = be->precision_summary();
  return r;
}

// Winograd's error scales with the magnitudes it transforms, not with each (possibly
// cancelled) result: tolerance 1e-4 of the tensor's largest value, plus 1e-4 relative.
double scaled_ratio(const Tensor& got, const Tensor& want, std::string* at) {
  double m = 0.0;
  for (float v : want.span<float>()) m = std::max(m, static_cast<double>(std::abs(v)));
  return tolerance_ratio(got, want, 1e-4 * m, 1e-4, at);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

// oneDNN 2.6 has Winograd kernels for AVX-512 CPUs only; elsewhere (or under a DNNL_MAX_CPU_ISA
// limit below AVX-512) every layer runs direct.
#define SKIP_WITHOUT_AVX512()                   \
  if (!onednn::onednn_has_avx512_core()) GTEST_SKIP() << "no AVX-512 for oneDNN: no Winograd kernel here"

TEST(Winograd, MatchesReferenceAndIsTaken) {
  SKIP_WITHOUT_AVX512();
  const Conv2dSpec spec{16, 32, 3, 1, 1, 1};
  const Dims xd{2, 16, 47, 45};  // >= 32768 values per image; not a multiple of the 4x4 tile
  const ConvRun want = conv_run("reference", "direct", spec, xd);
  const ConvRun wino = conv_run("onednn", "winograd", spec, xd);
  const ConvRun direct = conv_run("onednn", "direct", spec, xd);
  EXPECT_NE(wino.summary.find("Winograd F(4x4, 3x3) for 1 convolutions (0 "), std::string::npos) << wino.summary;
  EXPECT_EQ(direct.summary.find("Winograd"), std::string::npos) << direct.summary;
  std::string at;
  EXPECT_LE(scaled_ratio(wino.y, want.y, &at), 1.0) << "y " << at;
  EXPECT_LE(scaled_ratio(wino.dx, want.dx, &at), 1.0) << "dx " << at;
  ASSERT_EQ(wino.grads.size(), 2u);
  EXPECT_LE(scaled_ratio(wino.grads[0], want.grads[0], &at), 1.0) << "dw " << at;
  EXPECT_LE(scaled_ratio(wino.grads[1], want.grads[1], &at), 1.0) << "db " << at;
  // a different algorithm really ran (direct's rounding differs somewhere)
  EXPECT_FALSE(same_bits(wino.y, direct.y) && same_bits(wino.dx, direct.dx) && same_bits(wino.grads[0], direct.grads[0]));
}

TEST(Winograd, FusedReluMatchesReference) {
  SKIP_WITHOUT_AVX512();
  const Conv2dSpec spec{16, 16, 3, 1, 1, 1};
  const Dims xd{2, 16, 46, 50};
  const ConvRun want = fused_run("reference", "direct", spec, xd), wino = fused_run("onednn", "winograd", spec, xd);
  EXPECT_NE(wino.summary.find("for 1 convolutions"), std::string::npos) << wino.summary;
  std::string at;
  EXPECT_LE(scaled_ratio(wino.y, want.y, &at), 1.0) << "y " << at;
  for (std::size_t k = 0; k < want.grads.size(); ++k)
    EXPECT_LE(scaled_ratio(wino.grads[k], want.grads[k], &at), 1.0) << "grad " << k << " " << at;
}

TEST(Winograd, ShapesWithoutAKernelRunDirectAndAreCounted) {
  // stride 2 and 1x1 are not Winograd's; they run direct without being counted
  for (const Conv2dSpec& spec : {Conv2dSpec{16, 16, 3, 2, 1, 1}, Conv2dSpec{16, 16, 1, 1, 0, 1}}) {
    const ConvRun r = conv_run("onednn", "winograd", spec, {2, 16, 48, 48});
    EXPECT_NE(r.summary.find("for 0 convolutions (0 "), std::string::npos) << r.summary;
  }
  // a 3x3 stride-1 conv on a small input (the patch CNN's 16 x 27 x 27 < 32768 values per
  // image, measured slower with Winograd) runs direct and is counted, with direct's bits
  const Conv2dSpec small{16, 16, 3, 1, 1, 1};
  const ConvRun w = conv_run("onednn", "winograd", small, {2, 16, 27, 27});
  const ConvRun d = conv_run("onednn", "direct", small, {2, 16, 27, 27});
  EXPECT_NE(w.summary.find("for 0 convolutions (1 "), std::string::npos) << w.summary;
  EXPECT_TRUE(same_bits(w.y, d.y) && same_bits(w.dx, d.dx) && same_bits(w.grads[0], d.grads[0]));
}

TEST(Winograd, OtherBackendsAndValuesAreRefused) {
  auto ref = make_backend("reference");
  EXPECT_NO_THROW(ref->set_conv_algorithm("direct"));
  try {
    ref->set_conv_algorithm("winograd");
    ADD_FAILURE() << "reference accepted winograd";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.conv_algorithm"), std::string::npos) << e.what();
  }
  auto dnn = make_backend("onednn");
  EXPECT_THROW(dnn->set_conv_algorithm("fft"), InputError);
}
