// ctest-labels: cuda mpi
// ctest-ranks: 2
// ctest-timeout: 900
// ctest-link: crackseg_cuda crackseg_train
// A 2-rank GPU training run (NCCL, one GPU per rank: a node with 2 visible GPUs or per-task
// binding) against the same run on the MPI CPU path: bitwise mode, same data, seed and
// global batch, so the two differ only by the layers' rounding. Skips unless every rank has
// its own GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

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
lr = 1e-3
[train]
epochs = 1
steps = 3
batch = 8
micro_batch = 2
seed = 126
determinism = "bitwise"
log_every = 1
val_every = 1
)";

}  // namespace

TEST(CudaTrainRanks, TwoGpuRanksEqualTheMpiCpuRunWithinRounding) {
  if (!test::every_rank_has_its_own_gpu(MPI_COMM_WORLD)) GTEST_SKIP() << "needs one GPU per rank";
  cuda::register_cuda_backend();
  cuda::register_cuda_training();
  const auto dir = test::shared_tmpdir("cuda-ranks");
  const auto data = test::make_synth(dir, 24, 48);  // rank 0 writes, all wait (shared_tmpdir's contract)
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  nlohmann::json results[2];
  int k = 0;
  for (const std::string device : {"cuda", "cpu"}) {
    const auto out = train::run_training(
        test::tiny_config(kUnet, {"data.path=\"" + data.string() + "\"", "train.out=\"" + (dir / device).string() + "\"",
                                  "train.device=\"" + device + "\""}),
        comm, {.resume = false, .quiet = true});
    results[k++] = out.result;
  }
  EXPECT_EQ(results[0].at("backend").get<std::string>(), "cuda");
  // Three Adam steps from the same start: weights agree to float rounding amplified a little.
  const double rel = test::checkpoint_max_rel_diff(dir / "cuda" / "checkpoint.h5", dir / "cpu" / "checkpoint.h5");
  EXPECT_LT(rel, 1e-3) << "max relative weight difference GPU vs CPU";
  MPI_Barrier(MPI_COMM_WORLD);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) std::filesystem::remove_all(dir);
}
