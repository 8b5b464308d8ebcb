// ctest-link: crackseg_nn
// fp32 forward convolutions of at most 16 input channels whose output maps have at most 128 x
// 128 pixels run oneDNN's jit:avx512_core kernel in place of its first choice
// brgconv:avx512_core (dnnl_common.hpp take_jit_forward: faster there on the AVX-512 CPUs
// measured; bigger maps stay on brgconv, which won by far on them on a Zen 4). Checked: the
// layers the rule names really took it (the backend's arithmetic summary counts them, the one
// recorded in result.json) and the ones it does not name did not; CRACKSEG_NO_JIT_FORWARD=1
// keeps oneDNN's first choice; forward, input gradient, weight and bias gradients agree with
// the reference backend (double) either way, for a plain conv, a conv with a fused ReLU, and a
// stride-2 transposed conv (whose input gradient is a forward convolution of its 16-channel
// output gradient).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/to_bf16.hpp"
#include "src/graph/backend.hpp"
#include "src/graph/graph.hpp"
#include "tests/support/env.hpp"
#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

struct Result {
  Tensor y;
  std::vector<Tensor> grads;  // input gradient first, then the parameters'
  std::string summary;
};

// One forward and backward of `spec` from fixed seeds. With `relu` through a Graph (the ReLU
// fuses as a post-op on oneDNN; output and parameter gradients), else at layer level (the
// input gradient too, first in grads).
Result run(const std::string& backend, const LayerSpec& spec, const Dims& xd, bool relu) {
  auto be = make_backend(backend);
  StepContext ctx;
  ctx.training = true;
  Result r;
  if (relu) {
    Graph g;
    g.set_output(g.add("r", ReluSpec{}, {g.add("c", spec, {g.input()})}));
    g.instantiate(*be, 11);
    r.y = g.forward(ctx, random_tensor(xd, 3, Format::nchw)).to_format(Format::nchw);
    g.backward(ctx, random_tensor(r.y.dims(), 4, Format::nchw));
    for (Param* p : g.params()) r.grads.push_back(p->grad.clone());
    r.summary = be->precision_summary();  // while the layers live (they leave the count with them)
  } else {
    auto layer = be->make_layer(spec, "t.conv");
    const std::vector<Dims> dims{xd};
    layer->plan(dims);
    randomize_params(*layer, 11);
    layer->params_changed();
    const std::vector<Tensor> in{random_tensor(xd, 3, be->activation_format())};
    r.y = run_forward(*be, *layer, ctx, in);
    const Tensor dy = random_tensor(r.y.dims(), 4, be->activation_format());
    Tensor dx = Tensor::zeros(xd, DType::f32, in[0].format());
    const Tensor* ip = &in[0];
    Tensor* dp = &dx;
    layer->backward(ctx, std::span<const Tensor* const>(&ip, 1), r.y, dy, std::span<Tensor* const>(&dp, 1));
    r.y = r.y.to_format(Format::nchw);
    r.grads.push_back(dx.to_format(Format::nchw));
    for (Param* p : layer->params()) r.grads.push_back(p->grad.clone());
    r.summary = be->precision_summary();
  }
  return r;
}

// fp32 against double: 1e-5 of the tensor's largest value, plus 1e-5 relative.
void expect_close(const Result& got, const Result& want, const std::string& what) {
  const auto close = [&](const Tensor& a, const Tensor& b, const std::string& name) {
    double m = 0.0;
    for (float v : b.span<float>()) m = std::max(m, static_cast<double>(std::abs(v)));
    std::string at;
    EXPECT_LE(tolerance_ratio(a, b, 1e-5 * m, 1e-5, &at), 1.0) << what << " " << name << " " << at;
  };
  close(got.y, want.y, "y");
  ASSERT_EQ(got.grads.size(), want.grads.size()) << what;
  for (std::size_t k = 0; k < want.grads.size(); ++k) close(got.grads[k], want.grads[k], "grad " + std::to_string(k));
}

// oneDNN dispatches AVX-512 kernels here (its effective ISA: a DNNL_MAX_CPU_ISA limit counts)
bool has_brgconv_cpu() { return onednn::onednn_has_avx512_core(); }

const char* kTaken = "forward of 1 convolutions on oneDNN's jit:avx512_core kernel";

struct Case {
  const char* name;
  LayerSpec spec;
  Dims x;
  bool relu, taken;
};

std::vector<Case> cases() {
  return {
      // the patch CNN's 3 -> 16 and 16 -> 16 layers (27x27, ReLU fused), Spiral-Net's 6 -> 16 stride 2
      {"patch 3->16 relu", Conv2dSpec{3, 16, 3, 1, 1, 1}, {8, 3, 27, 27}, true, true},
      {"patch 16->16 relu", Conv2dSpec{16, 16, 3, 1, 1, 1}, {8, 16, 27, 27}, true, true},
      {"spiral 6->16 s2", Conv2dSpec{6, 16, 3, 2, 0, 1}, {2, 6, 63, 63}, false, true},
      // output maps up to 128 x 128 pixels move (Spiral-Net's 255 -> 127 entries), bigger ones
      // stay on brgconv (the U-Net's 16-channel layers at 400 and 200: far slower on jit on Zen 4)
      {"spiral 1->16 s2 255", Conv2dSpec{1, 16, 3, 2, 0, 1}, {1, 1, 255, 255}, false, true},
      {"16->16 at 128x128", Conv2dSpec{16, 16, 3, 1, 1, 1}, {1, 16, 128, 128}, true, true},
      {"16->16 at 129x128", Conv2dSpec{16, 16, 3, 1, 1, 1}, {1, 16, 129, 128}, true, false},
      {"3->16 at 200x200", Conv2dSpec{3, 16, 3, 1, 1, 1}, {1, 3, 200, 200}, false, false},
      // more input channels: oneDNN's first choice stays
      {"32->16", Conv2dSpec{32, 16, 3, 1, 1, 1}, {2, 32, 27, 27}, false, false},
      // stride-2 transposed conv 32 -> 16 (phases): its input gradient convolves 16 channels
      {"convT 32->16 s2", ConvTranspose2dSpec{32, 16, 3, 2, 0, 0}, {2, 32, 15, 15}, false, true},
      // ... whose output is the input's map: 130 x 130 stays on brgconv
      {"convT 32->16 s2 at 130", ConvTranspose2dSpec{32, 16, 3, 2, 0, 0}, {1, 32, 130, 130}, false, false},
  };
}

}  // namespace

TEST(JitForward, TakenWhereTheRuleSaysAndMatchesReference) {
  if (!has_brgconv_cpu()) GTEST_SKIP() << "no AVX-512: oneDNN offers no brgconv here, nothing to move off";
  for (const Case& c : cases()) {
    const Result want = run("reference", c.spec, c.x, c.relu);
    const Result got = run("onednn", c.spec, c.x, c.relu);
    EXPECT_EQ(got.summary.find(kTaken) != std::string::npos, c.taken) << c.name << ": " << got.summary;
    EXPECT_EQ(got.summary.rfind("fp32", 0), 0u) << got.summary;
    expect_close(got, want, c.name);
  }
}

TEST(JitForward, SwitchKeepsOneDnnsFirstChoice) {
  if (!has_brgconv_cpu()) GTEST_SKIP() << "no AVX-512: oneDNN offers no brgconv here";
  const ScopedEnv off("CRACKSEG_NO_JIT_FORWARD", "1");
  for (const Case& c : cases()) {
    const Result want = run("reference", c.spec, c.x, c.relu);
    const Result got = run("onednn", c.spec, c.x, c.relu);
    EXPECT_EQ(got.summary.find("jit:avx512_core"), std::string::npos) << c.name << ": " << got.summary;
    expect_close(got, want, c.name);
  }
}

TEST(JitForward, Bf16LayersAreNotMoved) {
  if (!has_brgconv_cpu() || !onednn::avx512bf16_available()) GTEST_SKIP() << "no AVX512-BF16 here";
  auto be = make_backend("onednn");
  be->set_precision("bf16");
  Graph g;
  g.set_output(g.add("c", Conv2dSpec{16, 16, 3, 1, 1, 1}, {g.input()}));
  g.instantiate(*be, 11);
  StepContext ctx;
  ctx.training = true;
  (void)g.forward(ctx, random_tensor({2, 16, 27, 27}, 3, Format::nchw));
  const std::string s = be->precision_summary();
  EXPECT_EQ(s.rfind("bf16 (1 convolutions", 0), 0u) << s;
  EXPECT_EQ(s.find("jit:avx512_core"), std::string::npos) << s;
}
