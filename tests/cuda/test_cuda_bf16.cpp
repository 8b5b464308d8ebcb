// ctest-labels: cuda
// ctest-timeout: 600
// bf16 mixed precision on the cuda backend (issue 15 item 3; kernels/cuda/precision.hpp,
// conv_core.cpp), as tests/unit/test_bf16.cpp checks it on the CPU: a convolution and a
// transposed convolution read bf16 operands (input, weights, output gradient) rounded
// exactly as the CPU rounds them and accumulate in fp32; cuDNN writes each result in bf16,
// widened to fp32. So
//  - with operands whose bf16 rounding changes every product (1 + 2^-8 - 2^-12 rounds to 1)
//    and sums that are small integers (exact in fp32 and in bf16), the output, the input
//    gradient and the weight gradient EQUAL the double reference on bf16-rounded operands,
//    bit for bit, and differ from the fp32 answer (fails if any operand is not rounded, or
//    rounded otherwise than to nearest even);
//  - on random operands they match that reference within the bf16 output rounding, and
//    every value is a bf16 value (fails if the fp32 path ran);
//  - `crackseg train` with train.precision = "bf16" on cuda trains (loss falls, result.json
//    records bf16), and bitwise + bf16 is refused naming the key.
// Sums of integers up to 256 are exact in fp32 and in bf16. Channel counts are multiples of
// 8, so cuDNN has bf16 tensor-core algorithms and no case falls back to fp32 (checked).
// Skips without a device, and the bf16 cases on a GPU below compute capability 8.0 (where
// the refusal naming the device is checked instead).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/precision.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/graph/layer.hpp"
#include "support/cli.hpp"

using namespace crackseg;
using test::random_host;
namespace fs = std::filesystem;

namespace {

bool gpu_has_bf16() {
  const auto devs = cuda::cuda_devices();
  return !devs.empty() && devs.front().cc_major >= cuda::kBf16MinCcMajor;
}

#define REQUIRE_BF16_GPU()                                                                \
  do {                                                                                    \
    CRACKSEG_REQUIRE_GPU();                                                               \
    if (!gpu_has_bf16()) GTEST_SKIP() << "GPU below compute capability 8.0: no bf16 tensor cores"; \
  } while (0)

float round_bf16(float v) { return cuda::bf16_to_f32(cuda::bf16_bits(v)); }
Tensor rounded(const Tensor& t) {
  Tensor r = t.clone();
  for (float& v : r.span<float>()) v = round_bf16(v);
  return r;
}
Tensor filled(const Dims& d, float v, Format f) {
  Tensor t = Tensor::empty(d, DType::f32, f);
  for (float& x : t.span<float>()) x = v;
  return t;
}

struct ConvRun {
  Tensor out, din, dw;  // host, nhwc (out, din) and plain (dw)
};

// One forward and backward of `spec` on `be` (bias zero), every operand given (host nhwc).
ConvRun run(Backend& be, const LayerSpec& spec, const Tensor& x, const Tensor& w, const Tensor& dout) {
  auto layer = be.make_layer(spec, "t");
  const bool dev = be.device() == Device::cuda;
  const Dims ins[] = {x.dims()};
  layer->plan(ins);
  auto ps = layer->params();
  be.upload(w, ps[0]->value);
  be.upload(Tensor::zeros(ps[1]->value.dims()), ps[1]->value);
  for (Param* p : ps) be.zero(p->grad);
  layer->params_changed();
  StepContext ctx;
  ctx.training = true;
  const Tensor xin = dev ? cuda::to_device(x) : x;
  const Dims od = layer->output_dims(ins);
  Tensor out = Tensor::empty(od, DType::f32, Format::nhwc, be.device());
  const Tensor* iptr[] = {&xin};
  layer->forward(ctx, iptr, out);
  const Tensor g = dev ? cuda::to_device(dout) : dout;
  Tensor din = Tensor::empty(x.dims(), DType::f32, Format::nhwc, be.device());
  be.zero(din);
  Tensor* dptr[] = {&din};
  layer->backward(ctx, iptr, out, g, dptr);
  ConvRun r;
  r.out = dev ? cuda::to_host(out) : out;
  r.din = dev ? cuda::to_host(din) : din;
  r.dw = dev ? cuda::to_host(ps[0]->grad) : ps[0]->grad.clone();
  return r;
}

::testing::AssertionResult equal(const Tensor& got, const Tensor& want) {
  auto a = got.span<float>();
  auto b = want.span<float>();
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes " << a.size() << " vs " << b.size();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return ::testing::AssertionFailure() << "index " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}
bool all_bf16(const Tensor& t) {
  for (float v : t.span<float>())
    if (round_bf16(v) != v) return false;
  return true;
}

struct Case {
  std::string label;
  LayerSpec spec;
  Dims x, w, dout;
};
std::vector<Case> cases() {
  return {{"conv2d 3x3 pad 1", Conv2dSpec{.in_c = 8, .out_c = 4, .kernel = 3, .padding = 1}, {2, 8, 4, 4},
           {4, 8, 3, 3}, {2, 4, 4, 4}},
          {"conv2d 3x3 stride 2", Conv2dSpec{.in_c = 8, .out_c = 16, .kernel = 3, .stride = 2, .padding = 1},
           {2, 8, 6, 6}, {16, 8, 3, 3}, {2, 16, 3, 3}},
          {"conv_transpose2d 2x2 stride 2", ConvTranspose2dSpec{.in_c = 16, .out_c = 8}, {2, 16, 3, 3},
           {16, 8, 2, 2}, {2, 8, 6, 6}}};
}

}  // namespace

TEST(CudaBf16, RoundedOperandsGiveTheExactIntegerSums) {
  REQUIRE_BF16_GPU();
  const float a = 1.0f + 0x1p-8f - 0x1p-12f;  // rounds to 1.0 in bf16; a*a != 1 in fp32
  ASSERT_EQ(round_bf16(a), 1.0f);
  auto ref = make_backend("reference-nhwc");
  auto dev = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  dev->set_precision("bf16");
  EXPECT_EQ(dev->precision_summary().rfind("bf16", 0), 0u) << dev->precision_summary();
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.label);
    const Tensor x = filled(c.x, a, Format::nhwc), w = filled(c.w, a, Format::plain),
                 dout = filled(c.dout, a, Format::nhwc);
    const ConvRun want = run(*ref, c.spec, rounded(x), rounded(w), rounded(dout));  // integers
    const ConvRun fp32 = run(*ref, c.spec, x, w, dout);
    const ConvRun got = run(*dev, c.spec, x, w, dout);
    EXPECT_TRUE(equal(got.out, want.out)) << "forward";
    EXPECT_TRUE(equal(got.din, want.din)) << "input gradient";
    EXPECT_TRUE(equal(got.dw, want.dw)) << "weight gradient";
    EXPECT_FALSE(equal(fp32.out, want.out)) << "the case must tell rounded from unrounded operands";
  }
  // Every case had a bf16 algorithm (channel counts are multiples of 8): none fell back.
  EXPECT_NE(dev->precision_summary().find("bf16 (3 convolutions; 0 without"), std::string::npos)
      << dev->precision_summary();
}

TEST(CudaBf16, RandomOperandsMatchTheRoundedReferenceAndAreBf16Values) {
  REQUIRE_BF16_GPU();
  auto ref = make_backend("reference-nhwc");
  auto dev = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  dev->set_precision("bf16");
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.label);
    const Tensor x = random_host(c.x, 1, -2.0f, 2.0f, Format::nhwc), w = random_host(c.w, 2, -1.0f, 1.0f),
                 dout = random_host(c.dout, 3, -1.0f, 1.0f, Format::nhwc);
    const ConvRun want = run(*ref, c.spec, rounded(x), rounded(w), rounded(dout));
    const ConvRun got = run(*dev, c.spec, x, w, dout);
    // The result's own bf16 rounding (half an ulp: 2^-8 relative at most) plus fp32 sums.
    constexpr double kRtol = 0x1p-8 * 1.01;
    EXPECT_TRUE(test::close(got.out, want.out, 1e-5, kRtol)) << "forward";
    EXPECT_TRUE(test::close(got.din, want.din, 1e-5, kRtol)) << "input gradient";
    EXPECT_TRUE(test::close(got.dw, want.dw, 1e-5, kRtol)) << "weight gradient";
    EXPECT_TRUE(all_bf16(got.out) && all_bf16(got.din) && all_bf16(got.dw)) << "the bf16 path did not run";
  }
}

TEST(CudaBf16, RefusedBelowComputeCapability8NamingTheDevice) {
  CRACKSEG_REQUIRE_GPU();
  if (gpu_has_bf16()) GTEST_SKIP() << "this GPU has bf16 tensor cores";
  auto dev = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  try {
    dev->set_precision("bf16");
    ADD_FAILURE() << "bf16 accepted on compute capability " << cuda::cuda_devices().front().cc_major;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(cuda::cuda_devices().front().name), std::string::npos) << e.what();
  }
}

namespace {
const char* kUnet = R"(
[data]
crop = 32
augment = false
[model]
name = "unet"
base = 8
depth = 2
[loss]
name = "bce"
[optim]
name = "adam"
lr = 5e-3
[train]
device = "cuda"
determinism = "fast"
precision = "bf16"
epochs = 4
batch = 4
micro_batch = 4
seed = 3
log_every = 1000
[eval]
bins = 16
)";
}  // namespace

TEST(CudaBf16, CrackSegTrainRunsInBf16) {
  REQUIRE_BF16_GPU();
  test::TempDir dir;
  const fs::path data = dir / "s.h5", cfg = dir / "run.toml", out = dir / "run";
  const auto s = test::run_cli("synth --out " + data.string() + " --count 24 --size 48 --seed 5 --split 0.5,0.25,0.25");
  ASSERT_EQ(s.code, 0) << s.output;
  std::ofstream(cfg) << kUnet;
  const std::string args = "train " + cfg.string() + " data.path=\"" + data.string() + "\" train.out=\"";
  const auto t = test::run_cli(args + out.string() + "\"");
  ASSERT_EQ(t.code, 0) << t.output;
  std::ifstream f(out / "result.json");
  const auto r = nlohmann::json::parse(f);
  EXPECT_EQ(r["arithmetic"]["precision"].get<std::string>().rfind("bf16", 0), 0u) << r["arithmetic"].dump();
  // Loss per epoch from metrics.csv's train_loss column: it falls.
  std::ifstream m(out / "metrics.csv");
  std::string line;
  std::getline(m, line);
  std::vector<std::string> cols;
  {
    std::stringstream hs(line);
    for (std::string c; std::getline(hs, c, ',');) cols.push_back(c);
  }
  const auto col = std::find(cols.begin(), cols.end(), "train_loss") - cols.begin();
  std::vector<double> losses;
  while (std::getline(m, line)) {
    std::stringstream ls(line);
    std::string cell;
    for (std::ptrdiff_t i = 0; i <= col && std::getline(ls, cell, ','); ++i) {
    }
    losses.push_back(std::stod(cell));
  }
  ASSERT_GE(losses.size(), 2u);
  EXPECT_TRUE(std::isfinite(losses.back()));
  EXPECT_LT(losses.back(), losses.front()) << "first " << losses.front() << ", last " << losses.back();

  const auto b = test::run_cli(args + (dir / "bitwise").string() + "\" train.determinism=\"bitwise\"");
  EXPECT_NE(b.code, 0) << b.output;
  EXPECT_NE(b.output.find("train.precision = \"bf16\""), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("bitwise"), std::string::npos) << b.output;
}
