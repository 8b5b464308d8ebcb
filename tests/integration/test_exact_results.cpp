// ctest-labels: mpi resume exact
// ctest-ranks: 4
// ctest-timeout: 900
// Exact results whatever the rank and thread count (issue 11). Within one 4-rank job the
// same training runs on sub-communicators of R ranks x T threads per rank:
//  - bitwise mode, U-Net (batchnorm + dropout) and Spiral-Net (concat + batchnorm): every
//    parameter AND every buffer (batchnorm running mean/var) of checkpoint.h5 is bit-identical
//    for 1x1, 1x2, 2x1, 3x1 and 4x1, and so are the test metrics result.json records;
//  - fast mode: every rank of a run ends on the same parameters and buffers, and the buffers
//    agree with bitwise mode to rounding (never by which samples were counted);
//  - a checkpoint written at 2x1 resumes on 1x2 to the uninterrupted run's bits.
// Before the fix, the 2-rank buffers differed from the 1-rank ones by up to 0.8 and 1x2
// differed from 1x1 in the weights: each EXPECT below fails on one of those defects.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <fstream>
#include <map>

#include "src/dist/mpi_communicator.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/thread_cap.hpp"
#include "src/train/trainer.hpp"
#include "support/train_fixture.hpp"

using namespace crackseg;

namespace {

// batch 12 = 6 micro-batches of 2: whole for 1, 2 and 3 ranks (3 does not divide the
// default batch 8). 6 is not a multiple of 4, so the 4-rank cases train batch 8 against their
// own 1 x 1 reference.
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
steps = 8
batch = 12
micro_batch = 2
seed = 11
determinism = "bitwise"
log_every = 1000
val_every = 1000
[eval]
bins = 16
)";

const char* kSpiral = R"(
[data]
crop = 31
augment = true
[model]
name = "spiral_net"
depths = [1, 2, 3]
width = 0.0625
skip = "concat"
[loss]
name = "bce"
[optim]
name = "adam"
lr = 1e-3
[train]
epochs = 10
steps = 6
batch = 12
micro_batch = 2
seed = 3
determinism = "bitwise"
log_every = 1000
val_every = 1000
[eval]
bins = 16
)";

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

struct Fixture {
  std::filesystem::path dir = test::shared_tmpdir("exact");
  std::filesystem::path data = test::make_synth(dir, 40, 48);
  ~Fixture() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (world_rank() == 0) std::filesystem::remove_all(dir);
  }
};

struct RunState {
  std::map<std::string, std::vector<float>> state;  // params/<name> and buffers/<name>
  nlohmann::json test_metrics;
  std::vector<uint64_t> digests;  // every rank's state digest
};

// Every parameter and buffer stored in a checkpoint, by name.
std::map<std::string, std::vector<float>> checkpoint_state(const std::filesystem::path& ckpt) {
  auto loaded = train::load_model_from_checkpoint(ckpt, "onednn");
  std::map<std::string, std::vector<float>> out;
  for (const Param* p : loaded.model->graph.params()) {
    const auto v = p->value.span<float>();
    out["params/" + p->name].assign(v.begin(), v.end());
  }
  for (const auto& [name, t] : loaded.model->graph.buffers()) {
    const auto v = t->span<float>();
    out["buffers/" + name].assign(v.begin(), v.end());
  }
  return out;
}

// Trains on the first n world ranks with `threads` OpenMP threads per rank into dir/out.
// Collective over MPI_COMM_WORLD; the checkpoint and result are read on world rank 0.
RunState train_on(int n, int threads, const char* toml, std::vector<std::string> ov, const std::filesystem::path& out) {
  ov.push_back("train.out=\"" + out.string() + "\"");
  ov.push_back("train.threads=" + std::to_string(threads));
  test::SubComm sub(n);
  RunState run;
  uint64_t digest = 0;
  if (sub.member()) {
    const auto cfg = test::tiny_config(toml, ov);
    dist::MpiCommunicator comm(sub.get(), 300.0);
    train::TrainOptions opt;
    opt.quiet = true;
    const auto outcome = train::run_training(cfg, comm, opt);
    EXPECT_EQ(static_cast<int>(outcome.status), static_cast<int>(train::TrainStatus::completed));
    digest = outcome.state_digest;
    EXPECT_NE(digest, 0u);
  }
  omp_set_num_threads(1);
  run.digests.resize(4);
  MPI_Gather(&digest, 1, MPI_UINT64_T, run.digests.data(), 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  run.digests.resize(static_cast<std::size_t>(n));
  if (world_rank() == 0) {
    run.state = checkpoint_state(out / "checkpoint.h5");
    std::ifstream in(out / "result.json");
    const auto result = nlohmann::json::parse(in);
    run.test_metrics = result.at("final").at("test");
    EXPECT_TRUE(result.at("arithmetic").at("thread_invariant").get<bool>()) << out;
    // The run really used the threads asked for (train.threads is capped at the cores a rank
    // may use; on a 1-core machine the 2-thread cases would silently test nothing).
    if (train::available_cores() >= threads) {
      EXPECT_EQ(result.at("threads_per_rank").get<int>(), threads) << out;
      if (result.at("determinism") == "bitwise") {  // one model replica per thread
        EXPECT_EQ(result.at("arithmetic").at("replicas_per_rank").get<int>(), threads) << out;
      }
    }
  }
  return run;
}

// Names the first tensor whose bytes differ (empty when all are identical).
std::string first_difference(const RunState& a, const RunState& b) {
  if (a.state.size() != b.state.size()) return "tensor count";
  for (const auto& [name, v] : a.state) {
    const auto it = b.state.find(name);
    if (it == b.state.end()) return name + " missing";
    if (std::memcmp(v.data(), it->second.data(), v.size() * sizeof(float)) != 0 || v.size() != it->second.size()) {
      double worst = 0;
      for (std::size_t i = 0; i < v.size() && i < it->second.size(); ++i)
        worst = std::max(worst, std::abs(double(v[i]) - it->second[i]));
      return name + " (largest difference " + std::to_string(worst) + ")";
    }
  }
  return "";
}

void expect_identical(const RunState& ref, const RunState& other, const std::string& what) {
  if (world_rank() != 0) return;
  EXPECT_EQ(first_difference(ref, other), "") << what;
  EXPECT_EQ(ref.test_metrics.dump(), other.test_metrics.dump()) << what;
  for (uint64_t d : other.digests) EXPECT_EQ(d, other.digests.front()) << what << ": ranks disagree";
}

void ranks_and_threads(const char* toml, const std::string& tag) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\""};
  const RunState r11 = train_on(1, 1, toml, ov, f.dir / (tag + "11"));
  if (world_rank() == 0) {
    ASSERT_FALSE(r11.state.empty());
    bool has_buffers = false;
    for (const auto& [name, v] : r11.state) has_buffers |= name.rfind("buffers/", 0) == 0;
    EXPECT_TRUE(has_buffers) << "the model must have batchnorm running statistics to test them";
  }
  expect_identical(r11, train_on(1, 2, toml, ov, f.dir / (tag + "12")), tag + ": 1 rank x 2 threads vs 1 x 1");
  expect_identical(r11, train_on(2, 1, toml, ov, f.dir / (tag + "21")), tag + ": 2 ranks x 1 thread vs 1 x 1");
  expect_identical(r11, train_on(3, 1, toml, ov, f.dir / (tag + "31")), tag + ": 3 ranks x 1 thread vs 1 x 1");
  // 4 ranks need a batch that 4 x micro_batch divides: batch 8, against its own 1 x 1 run.
  std::vector<std::string> ov8 = ov;
  ov8.push_back("train.batch=8");
  const RunState b11 = train_on(1, 1, toml, ov8, f.dir / (tag + "b11"));
  expect_identical(b11, train_on(4, 1, toml, ov8, f.dir / (tag + "b41")), tag + ": 4 ranks x 1 thread vs 1 x 1");
  expect_identical(b11, train_on(2, 2, toml, ov8, f.dir / (tag + "b22")), tag + ": 2 ranks x 2 threads vs 1 x 1");
  // The comparison can fail: another seed gives other bits.
  std::vector<std::string> ov2 = ov;
  ov2.push_back("train.seed=12");
  const RunState other = train_on(1, 1, toml, ov2, f.dir / (tag + "seed"));
  if (world_rank() == 0) {
    EXPECT_NE(first_difference(r11, other), "");
  }
}

}  // namespace

TEST(ExactResults, UnetBitwiseAnyRanksAndThreads) { ranks_and_threads(kUnet, "unet"); }

TEST(ExactResults, SpiralNetBitwiseAnyRanksAndThreads) { ranks_and_threads(kSpiral, "spiral"); }

// Fast mode: running statistics are gathered and applied in global order as in bitwise mode,
// so every rank holds the same buffers (the digests) and they equal bitwise mode's to rounding.
TEST(ExactResults, FastModeBuffersSameOnEveryRankAndCloseToBitwise) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\"", "train.batch=8"};
  std::vector<std::string> fast = ov;
  fast.push_back("train.determinism=\"fast\"");
  fast.push_back("optim.name=\"sgd\"");
  fast.push_back("optim.lr=0.01");
  std::vector<std::string> bit = ov;
  bit.push_back("optim.name=\"sgd\"");
  bit.push_back("optim.lr=0.01");
  const RunState f4 = train_on(4, 1, kUnet, fast, f.dir / "f4");
  const RunState b4 = train_on(4, 1, kUnet, bit, f.dir / "b4");
  if (world_rank() != 0) return;
  for (uint64_t d : f4.digests) EXPECT_EQ(d, f4.digests.front()) << "fast mode: ranks hold different state";
  for (const auto& [name, v] : b4.state) {
    if (name.rfind("buffers/", 0) != 0) continue;
    const auto& w = f4.state.at(name);
    double d2 = 0, n2 = 0;
    for (std::size_t i = 0; i < v.size(); ++i) d2 += (double(v[i]) - w[i]) * (double(v[i]) - w[i]), n2 += double(v[i]) * v[i];
    EXPECT_LT(std::sqrt(d2 / std::max(n2, 1e-12)), 1e-4) << name;
  }
}

// A checkpoint written by 2 ranks x 1 thread mid-run, resumed on 1 rank x 2 threads, ends on
// the uninterrupted 1 x 1 bits (parameters, buffers, optimizer position) and test metrics.
TEST(ExactResults, ResumeOnOtherRanksAndThreads) {
  Fixture f;
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\""};
  const RunState straight = train_on(1, 1, kUnet, ov, f.dir / "s");
  std::vector<std::string> first = ov;
  first.push_back("train.steps=3");
  train_on(2, 1, kUnet, first, f.dir / "r");
  const RunState resumed = train_on(1, 2, kUnet, ov, f.dir / "r");
  expect_identical(straight, resumed, "2x1 for 3 steps, then 1x2");
}

namespace crackseg::onednn {
std::string missing_bf16_isa();
bool amx_bf16_available();
}

// bf16 mixed precision (train.precision = "bf16") in bitwise mode, with a U-Net wide enough
// for our AMX weight gradient (on AMX CPUs; asserted): the operands are rounded
// elementwise and every micro-batch runs single-threaded on its replica, so the bits are the
// same at 1 x 1, 1 x 2 and 2 x 1 and after a resume on other ranks; they differ from the fp32
// run's (bf16 really ran); and the test metrics recorded equal a re-evaluation of the
// checkpoint (which evaluates in bf16).
TEST(ExactResults, Bf16BitwiseAnyRanksAndThreads) {
  if (const std::string m = onednn::missing_bf16_isa(); !m.empty()) GTEST_SKIP() << "no bf16 kernels here: " << m;
  Fixture f;
  // base 16: the 16- and 32-channel convolutions take our own AMX weight gradient on AMX CPUs
  // (amx_wgrad.hpp, sums per thread: single-threaded per replica in bitwise mode).
  std::string unet16 = kUnet;
  unet16.replace(unet16.find("base = 4"), 8, "base = 16");
  const std::vector<std::string> ov = {"data.path=\"" + f.data.string() + "\"", "train.precision=\"bf16\""};
  const RunState r11 = train_on(1, 1, unet16.c_str(), ov, f.dir / "bf11");
  expect_identical(r11, train_on(1, 2, unet16.c_str(), ov, f.dir / "bf12"), "bf16: 1 rank x 2 threads vs 1 x 1");
  expect_identical(r11, train_on(2, 1, unet16.c_str(), ov, f.dir / "bf21"), "bf16: 2 ranks x 1 thread vs 1 x 1");
  // Interrupted after 3 steps and resumed on other ranks/threads: the uninterrupted bits.
  std::vector<std::string> first = ov;
  first.push_back("train.steps=3");
  train_on(2, 1, unet16.c_str(), first, f.dir / "bfr");
  expect_identical(r11, train_on(1, 2, unet16.c_str(), ov, f.dir / "bfr"), "bf16: 2x1 for 3 steps, then 1x2");
  const RunState fp32 = train_on(1, 1, unet16.c_str(), {"data.path=\"" + f.data.string() + "\""}, f.dir / "fp11");
  if (world_rank() == 0) {
    EXPECT_NE(first_difference(r11, fp32), "") << "bf16 and fp32 runs gave the same bits";
    std::ifstream in(f.dir / "bf11" / "result.json");
    const auto result = nlohmann::json::parse(in);
    const std::string arith = result.at("arithmetic").at("precision").get<std::string>();
    EXPECT_EQ(arith.rfind("bf16 (", 0), 0u) << arith;
    EXPECT_NE(arith.find(" 0 without a bf16 kernel"), std::string::npos) << arith;
    EXPECT_EQ(arith.find("on our own AMX kernel") != std::string::npos, onednn::amx_bf16_available()) << arith;
    auto loaded = train::load_model_from_checkpoint(f.dir / "bf11" / "checkpoint.h5", "onednn");
    dist::MpiCommunicator self(MPI_COMM_SELF, 60.0);
    const auto te = train::evaluate_split(loaded.cfg.values, *loaded.model, self, "test", 0);
    const std::string eval_arith = loaded.backend->precision_summary();
    EXPECT_EQ(eval_arith.rfind("bf16 (", 0), 0u) << eval_arith;
    EXPECT_EQ(eval_arith.find("bf16 (0 "), std::string::npos) << eval_arith;
    for (auto it = result.at("final").at("test").begin(); it != result.at("final").at("test").end(); ++it)
      if (it->is_number() && te.summary.contains(it.key())) {
        EXPECT_EQ(it->dump(), te.summary[it.key()].dump()) << "bf16 recorded vs re-evaluated test " << it.key();
      }
  }
}
