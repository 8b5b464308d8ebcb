// ctest-labels: mpi resume
// ctest-ranks: 4
// ctest-timeout: 600
// Data parallelism is exact (DESIGN.md decision 4): within one 4-rank job, the same training
// runs on sub-communicators of 1, 2 and 4 ranks.
//  - bitwise mode: identical weights (hash) for the U-Net and the patch CNN after 20 steps;
//  - fast mode: agrees within 1e-5 relative;
//  - a checkpoint written by 2 ranks mid-run, resumed on 4, ends on the uninterrupted weights;
//  - preemption: SIGUSR1 raised on one rank mid-epoch -> every rank stops at the same step
//    boundary with a checkpoint; resuming gives the uninterrupted weights.
#include <gtest/gtest.h>

#include <csignal>

#include "src/checkpoint/checkpoint.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/signals.hpp"
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
base = 4
depth = 2
dropout = 0.2
[loss]
name = "bce_dice"
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 10
steps = 20
batch = 8
micro_batch = 2
seed = 5
determinism = "bitwise"
log_every = 1000
val_every = 1000
[eval]
bins = 16
)";

const char* kPatch = R"(
[data]
crop = 0
augment = false
max_train = 4
patch_ratio = 1
[model]
name = "patch_cnn"
h = 6
s = 1
[loss]
name = "bce"
[optim]
name = "adam"
lr = 1e-3
[train]
epochs = 10
steps = 20
batch = 16
micro_batch = 4
seed = 9
determinism = "bitwise"
log_every = 1000
val_every = 1000
)";

struct Fixture {
  std::filesystem::path dir = test::shared_tmpdir("ranks");
  std::filesystem::path data = test::make_synth(dir, 24, 48);
  ~Fixture() {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0) std::filesystem::remove_all(dir);
  }
};

// Trains on the first n world ranks into dir/out; returns the weight hash on world rank 0
// (0 elsewhere). Collective over MPI_COMM_WORLD.
uint64_t train_on(int n, const char* toml, std::vector<std::string> ov, const std::filesystem::path& out,
                  train::TrainStatus expect = train::TrainStatus::completed, train::TrainOptions opt = {}) {
  ov.push_back("train.out=\"" + out.string() + "\"");
  test::SubComm sub(n);
  uint64_t h = 0;
  if (sub.member()) {
    const auto cfg = test::tiny_config(toml, ov);
    dist::MpiCommunicator comm(sub.get(), 120.0);
    opt.quiet = true;
    const auto outcome = train::run_training(cfg, comm, opt);
    EXPECT_EQ(static_cast<int>(outcome.status), static_cast<int>(expect));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) h = test::checkpoint_weights_hash(out / "checkpoint.h5");
  return h;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

}  // namespace

TEST(TrainRanks, UnetBitwiseIdenticalAt1_2_4Ranks) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\""};
  const uint64_t h1 = train_on(1, kUnet, ov, f.dir / "u1");
  const uint64_t h2 = train_on(2, kUnet, ov, f.dir / "u2");
  const uint64_t h4 = train_on(4, kUnet, ov, f.dir / "u4");
  if (world_rank() == 0) {
    EXPECT_NE(h1, 0u);
    EXPECT_EQ(h1, h2);
    EXPECT_EQ(h1, h4);
  }
  // And the hash is sensitive: a different seed trains to different weights.
  std::vector<std::string> ov2 = ov;
  ov2.push_back("train.seed=6");
  const uint64_t h1b = train_on(1, kUnet, ov2, f.dir / "u1b");
  if (world_rank() == 0) {
    EXPECT_NE(h1, h1b);
  }
}

TEST(TrainRanks, PatchCnnBitwiseIdenticalAt1_2_4Ranks) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\""};
  const uint64_t h1 = train_on(1, kPatch, ov, f.dir / "p1");
  const uint64_t h2 = train_on(2, kPatch, ov, f.dir / "p2");
  const uint64_t h4 = train_on(4, kPatch, ov, f.dir / "p4");
  if (world_rank() == 0) {
    EXPECT_EQ(h1, h2);
    EXPECT_EQ(h1, h4);
  }
}

// Fast mode sums in MPI's order (and accumulates micro-batches in float), so results differ
// from 1 rank by rounding; "relative" is per tensor, ||a - b|| / ||a||. With SGD those
// differences stay near rounding size over 10 steps. (Adam would turn them into full +-lr steps on parameters
// whose true gradient is zero, e.g. conv biases followed by batchnorm: m/sqrt(v) of pure
// rounding noise has magnitude ~1, so it is not a useful yardstick for the reduction.)
// Not 20 steps: between steps 15 and 20 the runs can part abruptly by far more than rounding
// (a rounding-size difference flipping a discrete choice, such as a max-pool winner among
// near-equal values, is the likely cause; not traced further): measured
// 2.9e-4 on a batchnorm bias at step 20 after an unrelated change of one kernel's rounding
// (FMA in the narrow up-conv's weight gradient), under 1.1e-6 at steps 5, 10 and 15. The
// control run shows the yardstick is not loose: a 1% error in the update's scale (what a
// wrong average over ranks would be, and much less) moves the weights far past 1e-5.
TEST(TrainRanks, FastModeAgreesWithin1e5) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\"", "train.determinism=\"fast\"",
                                       "optim.name=\"sgd\"", "optim.lr=0.01", "train.steps=10"};
  train_on(1, kUnet, ov, f.dir / "f1");
  train_on(4, kUnet, ov, f.dir / "f4");
  std::vector<std::string> off = ov;
  off.push_back("optim.lr=0.0101");
  train_on(1, kUnet, off, f.dir / "f1_lr");
  if (world_rank() == 0) {
    const double d = test::checkpoint_max_rel_diff(f.dir / "f1" / "checkpoint.h5", f.dir / "f4" / "checkpoint.h5");
    EXPECT_LT(d, 1e-5);
    const double control =
        test::checkpoint_max_rel_diff(f.dir / "f1" / "checkpoint.h5", f.dir / "f1_lr" / "checkpoint.h5");
    EXPECT_GT(control, 1e-4) << "a 1% larger step must show";
  }
}

TEST(TrainRanks, CheckpointFrom2RanksResumesOn4) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\""};
  const uint64_t straight = train_on(1, kUnet, ov, f.dir / "s");
  // 2 ranks stop after 7 steps (mid-epoch: 19 training images / 8 = 2 steps per epoch... any
  // boundary works), then 4 ranks continue the same folder to 20 steps.
  std::vector<std::string> first = ov;
  first.push_back("train.steps=7");
  train_on(2, kUnet, first, f.dir / "r");
  const uint64_t resumed = train_on(4, kUnet, ov, f.dir / "r");
  if (world_rank() == 0) {
    EXPECT_EQ(straight, resumed);
  }
}

TEST(TrainRanks, PreemptionBySignalThenResumeEqualsUninterrupted) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\""};
  const uint64_t straight = train_on(2, kUnet, ov, f.dir / "s");
  train::TrainOptions opt;
  opt.raise_signal_at_step = 9;  // SIGUSR1 raised on rank 1 only, after global step 9
  opt.raise_signal_rank = 1;
  train_on(2, kUnet, ov, f.dir / "p", train::TrainStatus::preempted, opt);
  if (world_rank() == 0) {
    // Both ranks stopped at the boundary after step 9 (the signal reached rank 1 only).
    const auto info = checkpoint::read_info(f.dir / "p" / "checkpoint.h5");
    EXPECT_EQ(info.state.at("position").at("global_step").get<int64_t>(), 9);
    EXPECT_FALSE(std::filesystem::exists(f.dir / "p" / "result.json"));
  }
  clear_stop_request();
  const uint64_t resumed = train_on(4, kUnet, ov, f.dir / "p");
  if (world_rank() == 0) {
    EXPECT_EQ(straight, resumed);
  }
}

// Sharded evaluation: each image scored by exactly one rank, integer counts reduced, so the
// metrics at 2 and 4 ranks equal the 1-rank metrics exactly (and every image is counted once:
// compute_metrics throws on an image counted twice).
TEST(TrainRanks, EvalCountsEqualOneRank) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\"", "train.steps=4"};
  train_on(1, kUnet, ov, f.dir / "e");
  std::string dumps[3];
  const int sizes[3] = {1, 2, 4};
  for (int i = 0; i < 3; ++i) {
    test::SubComm sub(sizes[i]);
    if (sub.member()) {
      auto loaded = train::load_model_from_checkpoint(f.dir / "e" / "checkpoint.h5", "onednn");
      dist::MpiCommunicator comm(sub.get(), 60.0);
      const auto r = train::evaluate_split(loaded.cfg.values, *loaded.model, comm, "train", 0);
      dumps[i] = r.summary.dump();
      EXPECT_GT(r.summary.at("images").get<int64_t>(), 10);
    }
    MPI_Barrier(MPI_COMM_WORLD);
  }
  if (world_rank() == 0) {
    EXPECT_EQ(dumps[0], dumps[1]);
    EXPECT_EQ(dumps[0], dumps[2]);
  }
}
