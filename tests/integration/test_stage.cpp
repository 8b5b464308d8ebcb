// ctest-labels: mpi train
// ctest-ranks: 2 4
// ctest-timeout: 300
// Node-local staging (data.stage = "node", issue 17 item 2) on 2 and 4 ranks of one node:
// the dataset is copied once per node (one folder, one file, the source's bytes and
// checksum), every rank's dataset opens read the copy, training on it gives bitwise the
// weights and metrics of the unstaged run, and the copy is gone afterwards - also when
// staging fails, when a stop signal arrives during the copy, and when training throws; a
// stuck file system (a frozen loop-mounted ext4 as the staging folder) ends staging with an
// error on every rank instead of a hang.
// Two real nodes: test_slurm_two_nodes.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "io/dataset/dataset.hpp"
#include "io/stage/node_stage.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/train_state.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;
namespace fs = std::filesystem;

namespace {

const char* kUnet = R"(
[data]
crop = 0
augment = true
[model]
name = "unet"
base = 2
depth = 1
dropout = 0.1
[optim]
name = "adam"
lr = 3e-3
[train]
epochs = 2
batch = 8
micro_batch = 2
seed = 5
determinism = "bitwise"
log_every = 1000
[eval]
bins = 8
)";

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int r = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &r);
  return r;
}

struct Fixture {
  fs::path dir = test::shared_tmpdir("stage");
  fs::path data = test::make_synth(dir, 16, 32);
  fs::path stage_dir = dir / "stage";
  Fixture() {
    if (world_rank() == 0) fs::create_directories(stage_dir);
    MPI_Barrier(MPI_COMM_WORLD);
  }
  ~Fixture() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) fs::remove_all(dir);
  }
  // Entries in the staging folder, seen by rank 0 after every rank got here.
  [[nodiscard]] std::size_t staged_entries() const {
    MPI_Barrier(MPI_COMM_WORLD);
    std::size_t n = 0;
    if (world_rank() == 0)
      for ([[maybe_unused]] const auto& e : fs::recursive_directory_iterator(stage_dir)) ++n;
    return n;
  }
};

train::TrainOutcome train_into(const Fixture& f, const fs::path& out) {
  const auto cfg = test::tiny_config(kUnet, {"data.path=\"" + f.data.string() + "\"", "train.out=\"" + out.string() + "\""});
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  train::TrainOptions opt;
  opt.quiet = true;
  return train::run_training(cfg, comm, opt);
}

TEST(NodeStage, CopiedOncePerNodeReadByEveryRankAndTrainsToTheUnstagedWeights) {
  Fixture f;
  const auto plain = train_into(f, f.dir / "plain");
  uint64_t h_plain = 0, h_staged = 0;
  if (world_rank() == 0) h_plain = test::checkpoint_weights_hash(f.dir / "plain" / "checkpoint.h5");
  train::TrainOutcome staged;
  {
    io::StageOptions so;
    so.dir = f.stage_dir;
    io::NodeStage stage(f.data, so, MPI_COMM_WORLD);
    ASSERT_FALSE(stage.stopped());
    const auto& rec = stage.record();
    EXPECT_EQ(rec.nodes, 1);  // mpiexec on one host: one node
    EXPECT_EQ(rec.ranks_on_node, world_size());
    EXPECT_EQ(rec.bytes, fs::file_size(f.data));
    EXPECT_EQ(rec.checksum, train::file_checksum(f.data));
    EXPECT_EQ(rec.path.parent_path().parent_path(), f.stage_dir);
    EXPECT_EQ(train::file_checksum(rec.path), rec.checksum);
    // Every rank's opens of the configured path read the node's one copy.
    EXPECT_EQ(io::DatasetFile(f.data).path(), rec.path);
    EXPECT_EQ(io::redirected_dataset(f.dir / "." / "synth.h5"), rec.path);  // same file, other spelling
    if (world_rank() == 0) EXPECT_EQ(f.staged_entries(), 2u);  // one folder, one file
    else (void)f.staged_entries();
    EXPECT_EQ(rec.to_json().at("bytes"), rec.bytes);
    staged = train_into(f, f.dir / "staged");
    if (world_rank() == 0) {
      EXPECT_EQ(staged.result.at("dataset").at("path"), rec.path.string());
      EXPECT_EQ(staged.result.at("dataset").at("checksum"), rec.checksum);
    }
  }
  EXPECT_EQ(io::DatasetFile(f.data).path(), f.data);  // the redirect ends with the stage
  const auto left = f.staged_entries();
  if (world_rank() == 0) {
    EXPECT_EQ(left, 0u) << "the staged copy outlived its NodeStage";
    h_staged = test::checkpoint_weights_hash(f.dir / "staged" / "checkpoint.h5");
    EXPECT_NE(h_plain, 0u);
    EXPECT_EQ(h_plain, h_staged);
    EXPECT_EQ(plain.result.at("metrics"), staged.result.at("metrics"));
    // The checkpoint's config names the real dataset, not the removed copy.
    EXPECT_EQ(staged.result.at("config").at("data").at("path"), f.data.string());
  }
}

TEST(NodeStage, FailureStopAndExceptionsLeaveNothingBehind) {
  Fixture f;
  io::StageOptions so;
  so.dir = f.stage_dir;
  // A source that does not exist: every rank throws, the leader's message names it.
  try {
    io::NodeStage s(f.dir / "absent.h5", so, MPI_COMM_WORLD);
    ADD_FAILURE() << "staging a missing file succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("absent.h5") != std::string::npos) << what;
  }
  EXPECT_EQ(f.staged_entries(), 0u);
  // A staging folder that cannot be made (a file is in the way): the error says what to set.
  if (world_rank() == 0) std::ofstream(f.dir / "blocker") << "x";
  MPI_Barrier(MPI_COMM_WORLD);
  io::StageOptions blocked;
  blocked.dir = f.dir / "blocker" / "sub";
  try {
    io::NodeStage s(f.data, blocked, MPI_COMM_WORLD);
    ADD_FAILURE() << "staging into a path under a file succeeded";
  } catch (const Error& e) {
    const std::string what = e.what();
    if (world_rank() == 0) EXPECT_NE(what.find("data.stage_dir"), std::string::npos) << what;
    else EXPECT_NE(what.find("data.stage = \"none\""), std::string::npos) << what;
  }
  // A stop signal during the copy: every rank learns it, nothing is redirected or left.
  io::StageOptions stop = so;
  stop.stop_requested = [] { return true; };
  {
    io::NodeStage s(f.data, stop, MPI_COMM_WORLD);
    EXPECT_TRUE(s.stopped());
    EXPECT_EQ(io::DatasetFile(f.data).path(), f.data);
    EXPECT_EQ(f.staged_entries(), 0u);
  }
  // Training that throws unwinds through the stage, which removes the copy.
  try {
    io::NodeStage s(f.data, so, MPI_COMM_WORLD);
    EXPECT_GT(f.staged_entries() + (world_rank() == 0 ? 0u : 1u), 0u);
    throw std::runtime_error("training failed");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(f.staged_entries(), 0u);
}

// The other side of the stall rule: a healthy copy that takes many times stall_s in total
// succeeds, because progress is counted per chunk (a count taken only at the start would fail
// it). A 256 MB sparse file (32 chunks, copied and read back) against stall_s = 0.1 s.
TEST(NodeStage, ALongHealthyCopyIsNotAStall) {
  Fixture f;
  const fs::path big = f.dir / "big.h5";
  if (world_rank() == 0) {
    { std::ofstream touch(big); }
    fs::resize_file(big, 256u << 20);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  io::StageOptions so;
  so.dir = f.stage_dir;
  so.stall_s = 0.1;
  {
    io::NodeStage s(big, so, MPI_COMM_WORLD);
    EXPECT_EQ(s.record().bytes, 256u << 20);
    EXPECT_GT(s.record().copy_s, 3 * so.stall_s) << "the copy was too quick to test the rule";
  }
  EXPECT_EQ(f.staged_entries(), 0u);
}

// A stuck file system, for real: the staging folder is a loop-mounted ext4 image frozen with
// fsfreeze, so the leader's mkdir blocks in the kernel until it is thawed (what a hung NFS
// server or a dead disk does to a read or write). The leader gives up after stall_s, every
// rank gets an error instead of waiting in the broadcast for ever, and once the file system
// is thawed the abandoned worker removes what it made. Needs root, loop devices, mkfs.ext4
// and fsfreeze; skipped (on every rank together) where any is missing.
TEST(NodeStage, AStuckFileSystemEndsStagingWithAnErrorOnEveryRank) {
  Fixture f;
  const fs::path img = f.dir / "stuck.img", mnt = f.dir / "stuck";
  int ok = 0;
  if (world_rank() == 0) {
    fs::create_directories(mnt);
    const std::string make = "truncate -s 64M '" + img.string() + "' && mkfs.ext4 -q -F '" + img.string() +
                             "' >/dev/null 2>&1 && mount -o loop '" + img.string() + "' '" + mnt.string() +
                             "' 2>/dev/null";
    ok = std::system(make.c_str()) == 0;
    if (ok && std::system(("fsfreeze --freeze '" + mnt.string() + "'").c_str()) != 0) {
      (void)std::system(("umount '" + mnt.string() + "'").c_str());
      ok = 0;
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!ok) GTEST_SKIP() << "needs root, loop devices, mkfs.ext4 and fsfreeze";
  // Thawed and unmounted whatever happens (before the fixture removes its folder).
  struct Thaw {
    fs::path mnt;
    ~Thaw() {
      if (world_rank() != 0) return;
      (void)std::system(("fsfreeze --unfreeze '" + mnt.string() + "' 2>/dev/null").c_str());
      (void)std::system(("umount '" + mnt.string() + "' 2>/dev/null || umount -l '" + mnt.string() + "'").c_str());
    }
  } thaw{mnt};

  io::StageOptions so;
  so.dir = mnt;
  so.stall_s = 2;
  const auto t0 = std::chrono::steady_clock::now();
  std::string what;
  try {
    io::NodeStage s(f.data, so, MPI_COMM_WORLD);
    ADD_FAILURE() << "staging onto a frozen file system succeeded";
  } catch (const Error& e) {
    what = e.what();
  }
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(waited, 2.0) << what;
  EXPECT_LT(waited, 30.0) << what;
  if (world_rank() == 0) {
    EXPECT_NE(what.find("no progress for 2 s"), std::string::npos) << what;
    EXPECT_NE(what.find(mnt.string()), std::string::npos) << what;
  } else {
    EXPECT_NE(what.find("data.stage = \"none\""), std::string::npos) << what;
  }
  EXPECT_EQ(io::DatasetFile(f.data).path(), f.data);  // nothing redirected

  // Thawed, the abandoned worker's mkdir returns; it stops and removes its folder.
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    ASSERT_EQ(std::system(("fsfreeze --unfreeze '" + mnt.string() + "'").c_str()), 0);
    std::size_t left = 1;
    for (int i = 0; i < 200 && left > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      left = 0;
      for (const auto& e : fs::directory_iterator(mnt))
        if (e.path().filename().string().rfind("crackseg-stage-", 0) == 0) ++left;
    }
    EXPECT_EQ(left, 0u) << "the abandoned copy's folder was not removed after the thaw";
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
