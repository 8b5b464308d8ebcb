// ctest-labels: cuda
// ctest-timeout: 600
// train.device = "cuda" through the trainer (run_training): the batches are uploaded, the
// step runs on the device with DeviceLoss, DeviceOptimizer and NCCL + DeviceGradientSync,
// checkpoints and evaluation go through the host copy of the model.
//  - a short run of a small U-Net on the synthetic set: the epoch training loss falls, the
//    validation and test metrics are there, and a resume from its checkpoint continues;
//  - its first step's loss equals the oneDNN run's (same init, data, dropout masks) to
//    rounding.
// Skips without a device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "cuda_test_util.hpp"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/train_kit.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

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
epochs = 6
batch = 8
micro_batch = 4
seed = 126
determinism = "bitwise"
log_every = 1000
val_every = 3
[eval]
bins = 16
)";

// The train_loss column of metrics.csv, one value per epoch.
std::vector<double> train_losses(const std::filesystem::path& csv) {
  std::ifstream f(csv);
  std::string line;
  std::getline(f, line);
  std::vector<std::string> cols;
  std::stringstream hs(line);
  for (std::string c; std::getline(hs, c, ',');) cols.push_back(c);
  const auto col = std::find(cols.begin(), cols.end(), "train_loss") - cols.begin();
  std::vector<double> out;
  while (std::getline(f, line)) {
    std::stringstream ls(line);
    std::string cell;
    for (std::ptrdiff_t i = 0; i <= col && std::getline(ls, cell, ','); ++i) {
    }
    out.push_back(std::stod(cell));
  }
  return out;
}

}  // namespace

TEST(CudaTrainer, LossFallsAndTheRunResumes) {
  CRACKSEG_REQUIRE_GPU();
  cuda::register_cuda_backend();
  cuda::register_cuda_training();
  const auto dir = test::shared_tmpdir("cuda-trainer");
  const auto data = test::make_synth(dir, 48, 48);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  const std::vector<std::string> o = {"data.path=\"" + data.string() + "\"", "train.out=\"" + (dir / "run").string() + "\""};
  const auto out = train::run_training(test::tiny_config(kUnet, o), comm, {.resume = false, .quiet = true});
  EXPECT_EQ(out.result.at("backend").get<std::string>(), "cuda");
  const auto losses = train_losses(dir / "run" / "metrics.csv");
  ASSERT_EQ(losses.size(), 6u);
  EXPECT_LT(losses.back(), 0.8 * losses.front()) << "first " << losses.front() << ", last " << losses.back();
  EXPECT_TRUE(out.result.at("metrics").contains("val_f1")) << out.result.at("metrics").dump();
  EXPECT_TRUE(out.result.at("metrics").contains("test_f1")) << out.result.at("metrics").dump();
  EXPECT_TRUE(std::filesystem::exists(dir / "run" / "best.h5"));

  // Resume: the checkpoint is read into the host copy and copied up; two more epochs.
  auto more = o;
  more.push_back("train.epochs=8");
  const auto resumed = train::run_training(test::tiny_config(kUnet, more), comm, {.resume = true, .quiet = true});
  EXPECT_EQ(resumed.result.at("epochs_done").get<int64_t>(), 8);
  EXPECT_EQ(train_losses(dir / "run" / "metrics.csv").size(), 8u);
  std::filesystem::remove_all(dir);
}

TEST(CudaTrainer, FirstStepLossEqualsTheCpuRun) {
  CRACKSEG_REQUIRE_GPU();
  cuda::register_cuda_backend();
  cuda::register_cuda_training();
  const auto dir = test::shared_tmpdir("cuda-first-step");
  const auto data = test::make_synth(dir, 24, 48);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  auto run = [&](const std::string& device) {
    const std::vector<std::string> o = {"data.path=\"" + data.string() + "\"",
                                        "train.out=\"" + (dir / device).string() + "\"", "train.steps=1",
                                        "train.device=\"" + device + "\""};
    (void)train::run_training(test::tiny_config(kUnet, o), comm, {.resume = false, .quiet = true});
    return train_losses(dir / device / "metrics.csv").at(0);
  };
  const double gpu = run("cuda"), cpu = run("cpu");
  EXPECT_NEAR(gpu, cpu, 1e-4 * std::abs(cpu)) << "cuda " << gpu << ", cpu " << cpu;
  std::filesystem::remove_all(dir);
}
