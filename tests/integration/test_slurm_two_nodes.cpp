// ctest-labels: slurm
// ctest-timeout: 300
// A two-node SLURM cluster on one machine (slurm/local-cluster.sh --nodes 2: two slurmd,
// node1 and node2, each with its own port, spool and TmpFS) runs the user-facing template
// launch/scripts/train.sbatch as a 2-node x 1-rank job through sbatch + srun --mpi=pmix,
// with data.stage = "node". Checked: the ranks land on different nodes (staging made two
// copies, one per node, both present mid-run); USR1 delivered to the batch shell mid-run
// reaches the ranks on both nodes, the job checkpoints, exits 75, requeues itself and
// resumes; the final weights are bitwise those of an uninterrupted 1-rank run outside SLURM;
// result.json records the staging; the copies are gone after both the preempted and the
// final run.
//
// Not like a real cluster: both nodes share one kernel, so OpenMPI's shared-memory BTL
// would name its segments the same on both "nodes" and crash (vader segfaults in
// MPI_Comm_split_type); the job uses OMPI_MCA_btl=self,tcp, i.e. rank-to-rank traffic goes
// over TCP on this host's interfaces, not over a separate link.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "slurm/process.hpp"
#include "support/train_fixture.hpp"
#include "test_slurm_cluster.hpp"

using namespace crackseg;
using namespace crackseg::sweep;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::size_t entries(const fs::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

// The job's state from scontrol ("" once it is gone).
std::string job_state(const std::string& job) {
  auto r = run_process({"scontrol", "-o", "show", "job", job});
  const auto p = r.out.find("JobState=");
  return p == std::string::npos ? "" : r.out.substr(p + 9, r.out.find(' ', p) - p - 9);
}

TEST(SlurmTwoNodes, StagedTrainingAcrossNodesSurvivesRequeueWithTheOneNodeWeights) {
  const std::string bin = test::binary().string();
  if (run_process({bin, "train", "--help"}).exit_code != 0) GTEST_SKIP() << "`crackseg train` is not in this build";
  test::TempDir tmp;
  chmod(tmp.path().c_str(), 0755);
  auto r = run_process({bin, "synth", "--out", (tmp / "synth.h5").string(), "--count", "16", "--size", "32", "--seed",
                        "7"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::create_directories(tmp / "stage");
  std::ofstream(tmp / "run.toml") << "[data]\npath = \"" << (tmp / "synth.h5").string()
                                  << "\"\ncrop = 0\naugment = true\n[model]\nname = \"unet\"\nbase = 2\ndepth = 1\n"
                                     "dropout = 0.1\n[optim]\nname = \"adam\"\nlr = 3e-3\n[train]\nepochs = 40\n"
                                     "batch = 4\nmicro_batch = 2\nseed = 4\ndeterminism = \"bitwise\"\nthreads = 1\n"
                                     "log_every = 1000\n";

  test::LocalCluster cluster({}, 2);
  // OMPI_MCA_btl: see the header. CRACKSEG: the binary under test. sbatch exports the
  // environment to the job by default.
  setenv("OMPI_MCA_btl", "self,tcp", 1);
  setenv("CRACKSEG", bin.c_str(), 1);
  const fs::path out = tmp / "two";
  r = run_process({"sbatch", "--parsable", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1",
                   "--chdir=" + tmp.path().string(), "--output=" + (tmp / "job.out").string(), "--open-mode=append",
                   (test::source_dir() / "launch" / "scripts" / "train.sbatch").string(), (tmp / "run.toml").string(),
                   "data.stage=\"node\"", "data.stage_dir=\"" + (tmp / "stage").string() + "\"",
                   "train.out=\"" + out.string() + "\"", "--quiet"});
  unsetenv("OMPI_MCA_btl");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string job = r.out.substr(0, r.out.find_first_of(";\n"));

  // Mid-run (first epoch in metrics.csv): one staged copy per node, then USR1 to the batch shell.
  for (int i = 0; i < 900; ++i) {
    const auto csv = slurp(out / "metrics.csv");
    if (std::count(csv.begin(), csv.end(), '\n') >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(fs::exists(out / "result.json")) << "finished before the signal: give it more epochs\n"
                                                << slurp(tmp / "job.out");
  std::vector<std::string> copies;
  for (const auto& e : fs::directory_iterator(tmp / "stage")) copies.push_back(e.path().filename().string());
  std::sort(copies.begin(), copies.end());
  ASSERT_EQ(copies.size(), 2u) << slurp(tmp / "job.out");
  EXPECT_NE(copies[0].find("crackseg-stage-" + job + "-node1-"), std::string::npos) << copies[0];
  EXPECT_NE(copies[1].find("crackseg-stage-" + job + "-node2-"), std::string::npos) << copies[1];
  (void)run_checked({"scancel", "--batch", "--signal=USR1", job});

  // Requeued (exit 75), it waits out its BeginTime (~11 s), resumes and completes.
  std::string state;
  for (int i = 0; i < 1800; ++i) {
    state = job_state(job);
    if (fs::exists(out / "result.json") && (state == "COMPLETED" || state.empty())) break;
    if (state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto log = slurp(tmp / "job.out");
  ASSERT_TRUE(fs::exists(out / "result.json")) << "job state " << state << "\n" << log;
  EXPECT_NE(log.find("2 node(s)"), std::string::npos) << log;
  EXPECT_NE(log.find("preempted, checkpoint written; requeueing job " + job), std::string::npos) << log;
  EXPECT_NE(log.find("(restart 1)"), std::string::npos) << log;
  EXPECT_EQ(entries(tmp / "stage"), 0u) << "staged copies left behind\n" << log;

  const auto res = nlohmann::json::parse(slurp(out / "result.json"));
  EXPECT_EQ(res.at("world_size"), 2);
  EXPECT_EQ(res.at("staging").at("nodes"), 2);
  EXPECT_EQ(res.at("staging").at("ranks_on_node"), 1);
  EXPECT_EQ(res.at("staging").at("bytes"), fs::file_size(tmp / "synth.h5"));
  EXPECT_EQ(res.at("config").at("data").at("path"), (tmp / "synth.h5").string());

  // The same training uninterrupted on one rank, outside SLURM.
  r = run_process({bin, "train", (tmp / "run.toml").string(), "train.out=\"" + (tmp / "one").string() + "\"",
                   "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::checkpoint_weights_hash(out / "checkpoint.h5"),
            test::checkpoint_weights_hash(tmp / "one" / "checkpoint.h5"));
  EXPECT_EQ(res.at("metrics"), nlohmann::json::parse(slurp(tmp / "one" / "result.json")).at("metrics"));
}

}  // namespace
