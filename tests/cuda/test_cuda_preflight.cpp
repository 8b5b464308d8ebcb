// ctest-labels: cuda
// ctest-timeout: 900
// ctest-link: crackseg_cuda crackseg_train
// Issue 14's GPU checks, written before the first GPU run (they skip without a device):
//  - dropout: the CUDA layer's mask equals the oneDNN kernel's bit for bit (inline sample
//    ids and the device-array path above kDropoutInlineIds items);
//  - batchnorm with one value per channel (N*H*W = 1): running variance finite and equal to
//    the CPU backends' (biased variance there); eps = 0 refused; deferred batch statistics
//    equal oneDNN's to rounding;
//  - fast mode (non-deterministic algorithms, SPATIAL_PERSISTENT batchnorm) end to end;
//  - a device checkpoint evaluates with default flags (--backend auto -> cuda) and gives
//    the oneDNN model's outputs to rounding;
//  - resume reproduces the uninterrupted bitwise run to the bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/train_kit.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/train_state.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;
using test::random_host;

namespace {

const char* kUnet = R"(
[data]
crop = 32
augment = true
[model]
name = "unet"
base = 8
depth = 2
dropout = 0.1
[loss]
name = "bce_dice"
[optim]
name = "adam"
lr = 5e-3
[train]
device = "cuda"
epochs = 4
batch = 8
micro_batch = 4
seed = 126
determinism = "bitwise"
log_every = 1000
val_every = 2
[eval]
bins = 16
)";

void register_cuda() {
  cuda::register_cuda_backend();
  cuda::register_cuda_training();
}

std::vector<uint8_t> keep_pattern(const Tensor& t) {
  const Tensor h = t.device() == Device::cuda ? cuda::to_host(t) : t;
  std::vector<uint8_t> k;
  for (float v : h.span<float>()) k.push_back(v != 0.0f);
  return k;
}

Tensor forward_one(Backend& be, Layer& layer, const Tensor& x, const StepContext& ctx) {
  const Dims d = x.dims();
  layer.plan(std::vector<Dims>{d});
  const Tensor in = be.device() == Device::cuda ? cuda::to_device(x) : x;
  Tensor out = Tensor::empty(layer.output_dims(std::vector<Dims>{d}), DType::f32,
                             d.size() == 4 ? be.activation_format() : Format::plain, be.device());
  const Tensor* ptr = &in;
  layer.forward(ctx, std::span<const Tensor* const>(&ptr, 1), out);
  return out;
}

}  // namespace

TEST(CudaPreflight, DropoutMaskEqualsTheCpuKernelsBitForBit) {
  CRACKSEG_REQUIRE_GPU();
  auto gpu = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  auto cpu = make_backend("onednn");
  for (const Dims& d : {Dims{4, 16, 9, 11}, Dims{cuda::kDropoutInlineIds + 3, 3, 5, 5}, Dims{5, 37}}) {
    std::vector<uint64_t> ids;
    for (int64_t n = 0; n < d[0]; ++n) ids.push_back((uint64_t{3} << 33) + 1000 * static_cast<uint64_t>(n));
    StepContext ctx{.training = true, .seed = 126, .epoch = 5, .sample_ids = ids};
    Tensor x = Tensor::empty(d, DType::f32, d.size() == 4 ? Format::nhwc : Format::plain);
    for (float& v : x.span<float>()) v = 1.0f;
    for (const std::string name : {"enc1.drop", "dec3.drop"}) {
      auto gl = gpu->make_layer(DropoutSpec{0.1f}, name);
      auto cl = cpu->make_layer(DropoutSpec{0.1f}, name);
      const auto g = keep_pattern(forward_one(*gpu, *gl, x, ctx));
      const auto c = keep_pattern(forward_one(*cpu, *cl, x, ctx));
      ASSERT_EQ(g.size(), c.size());
      std::size_t diff = 0;
      for (std::size_t i = 0; i < g.size(); ++i) diff += g[i] != c[i];
      EXPECT_EQ(diff, 0u) << to_string(d) << " " << name;
    }
  }
}

TEST(CudaPreflight, BatchnormWithOneValuePerChannelFollowsTheCpuRule) {
  CRACKSEG_REQUIRE_GPU();
  auto gpu = cuda::make_cuda_backend({.tf32 = false, .deterministic = true});
  const Dims d{1, 8, 1, 1};
  const Tensor x = random_host(d, 3, -2.0f, 2.0f);
  StepContext ctx{.training = true, .seed = 1, .epoch = 0, .sample_ids = {}};
  std::vector<std::vector<float>> running;
  for (const std::string b : {"cuda", "onednn", "reference"}) {
    auto be = b == "cuda" ? cuda::make_cuda_backend({.tf32 = false, .deterministic = true}) : make_backend(b);
    auto layer = be->make_layer(BatchNorm2dSpec{8, 1e-5f, 0.1f}, "bn");
    (void)forward_one(*be, *layer, x, ctx);
    std::vector<float> v;
    for (const auto& [n, t] : layer->buffers()) {
      const Tensor h = t->device() == Device::cuda ? cuda::to_host(*t) : *t;
      for (float f : h.span<float>()) {
        EXPECT_TRUE(std::isfinite(f)) << b << " " << n;
        v.push_back(f);
      }
    }
    running.push_back(v);
  }
  for (std::size_t i = 0; i < running[0].size(); ++i) {
    EXPECT_NEAR(running[0][i], running[1][i], 1e-6) << i;
    EXPECT_NEAR(running[0][i], running[2][i], 1e-6) << i;
  }
  // The variance half: (1 - 0.1) * 1 + 0.1 * 0 = 0.9 exactly as the CPU backends give it.
  for (std::size_t c = 8; c < 16; ++c) EXPECT_FLOAT_EQ(running[0][c], 0.9f);
  EXPECT_THROW((void)gpu->make_layer(BatchNorm2dSpec{8, 0.0f, 0.1f}, "bn0"), InputError);
}

TEST(CudaPreflight, DeferredBatchStatisticsEqualOneDnns) {
  CRACKSEG_REQUIRE_GPU();
  const Dims d{2, 6, 5, 7};
  const Tensor x = random_host(d, 11, -2.0f, 2.0f);
  StepContext ctx{.training = true, .seed = 1, .epoch = 0, .sample_ids = {}};
  std::vector<std::vector<float>> stats, running;
  for (const std::string b : {"cuda", "onednn"}) {
    auto be = b == "cuda" ? cuda::make_cuda_backend({.tf32 = false, .deterministic = true}) : make_backend(b);
    auto layer = be->make_layer(BatchNorm2dSpec{6, 1e-5f, 0.1f}, "bn");
    layer->set_defer_running_stats(true);
    (void)forward_one(*be, *layer, x, ctx);
    std::vector<float> s(layer->batch_stats_size());
    ASSERT_EQ(s.size(), 12u) << b;
    layer->read_batch_stats(s);
    stats.push_back(s);
    // Deferred: the buffers are untouched until apply_batch_stats.
    const Tensor rv = layer->buffers()[1].second->device() == Device::cuda ? cuda::to_host(*layer->buffers()[1].second)
                                                                         : *layer->buffers()[1].second;
    EXPECT_EQ(rv.span<float>()[0], 1.0f) << b;
    layer->apply_batch_stats(s);
    const Tensor rm = layer->buffers()[0].second->device() == Device::cuda ? cuda::to_host(*layer->buffers()[0].second)
                                                                         : *layer->buffers()[0].second;
    running.push_back(std::vector<float>(rm.span<float>().begin(), rm.span<float>().end()));
  }
  for (std::size_t i = 0; i < stats[0].size(); ++i) EXPECT_NEAR(stats[0][i], stats[1][i], 1e-5 * (1 + std::abs(stats[1][i])));
  for (std::size_t i = 0; i < running[0].size(); ++i) EXPECT_NEAR(running[0][i], running[1][i], 1e-6);
}

TEST(CudaPreflight, FastModeTrainsEndToEnd) {
  CRACKSEG_REQUIRE_GPU();
  register_cuda();
  const auto dir = test::shared_tmpdir("cuda-fast");
  const auto data = test::make_synth(dir, 32, 48);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  const auto out = train::run_training(
      test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + (dir / "run").string() + "\"",
                                "train.determinism=\"fast\""}),
      comm, {.resume = false, .quiet = true});
  EXPECT_EQ(out.result.at("backend").get<std::string>(), "cuda");
  const double f1 = out.result.at("metrics").at("test_f1").get<double>();
  EXPECT_TRUE(std::isfinite(f1));
  EXPECT_GE(f1, 0.0);
  std::filesystem::remove_all(dir);
}

TEST(CudaPreflight, DeviceCheckpointEvaluatesWithDefaultFlags) {
  CRACKSEG_REQUIRE_GPU();
  register_cuda();
  const auto dir = test::shared_tmpdir("cuda-ckpt");
  const auto data = test::make_synth(dir, 24, 48);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  (void)train::run_training(test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"",
                                                       "train.out=\"" + (dir / "run").string() + "\"", "train.epochs=1"}),
                            comm, {.resume = false, .quiet = true});
  const auto ckpt = dir / "run" / "checkpoint.h5";
  auto dev = train::load_model_from_checkpoint(ckpt);  // "auto"
  EXPECT_EQ(dev.backend->name(), "cuda");
  auto host = train::load_model_from_checkpoint(ckpt, "onednn");
  const auto dp = dev.model->graph.params(), hp = host.model->graph.params();
  ASSERT_EQ(dp.size(), hp.size());
  for (std::size_t i = 0; i < dp.size(); ++i) {
    const Tensor a = cuda::to_host(dp[i]->value).to_format(hp[i]->value.format());
    EXPECT_EQ(0, std::memcmp(a.raw(), hp[i]->value.raw(), a.nbytes())) << dp[i]->name;
  }
  // The CLI path end to end: `crackseg eval` with default flags.
  const std::string cmd = std::string(CRACKSEG_BINARY) + " eval --checkpoint '" + ckpt.string() + "' --data '" +
                          data.string() + "' > '" + (dir / "eval.log").string() + "' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::filesystem::remove_all(dir);
}

TEST(CudaPreflight, ResumeReproducesTheUninterruptedRun) {
  CRACKSEG_REQUIRE_GPU();
  register_cuda();
  const auto dir = test::shared_tmpdir("cuda-resume");
  const auto data = test::make_synth(dir, 24, 48);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  auto run = [&](const std::string& name, int epochs, bool resume) {
    (void)train::run_training(
        test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + (dir / name).string() + "\"",
                                  "train.epochs=" + std::to_string(epochs)}),
        comm, {.resume = resume, .quiet = true});
  };
  run("straight", 4, false);
  run("resumed", 2, false);
  run("resumed", 4, true);
  EXPECT_EQ(test::checkpoint_weights_hash(dir / "resumed" / "checkpoint.h5"),
            test::checkpoint_weights_hash(dir / "straight" / "checkpoint.h5"));
  std::filesystem::remove_all(dir);
}
