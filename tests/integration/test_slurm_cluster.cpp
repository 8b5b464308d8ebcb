// ctest-labels: slurm
// ctest-link: crackseg_slurm
// ctest-timeout: 120
// slurm/local-cluster.sh: the node comes up idle, a trivial batch job runs, extra slurm.conf
// lines apply, and stop leaves none of the cluster's daemons behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "slurm/process.hpp"
#include "test_slurm_cluster.hpp"

using namespace crackseg;
using namespace crackseg::sweep;
namespace fs = std::filesystem;

TEST(LocalCluster, StartsIdleRunsAJobAndStopsEveryDaemon) {
  auto cluster = std::make_unique<test::LocalCluster>(std::vector<std::string>{"MaxArraySize=7"});
  const fs::path dir = cluster->dir();
  EXPECT_EQ(run_checked({"sinfo", "-h", "-o", "%t"}), "idle\n");
  EXPECT_NE(run_checked({"scontrol", "show", "config"}).find("MaxArraySize            = 7"), std::string::npos);

  const std::string out = (dir / "job.out").string();
  const std::string id = run_checked({"sbatch", "--parsable", "-o", out, "--wrap", "echo hello from $SLURM_JOB_ID"});
  const std::string job = id.substr(0, id.find_first_of(";\n"));
  for (int i = 0; i < 300 && !run_checked({"squeue", "-h", "-j", job}).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::ifstream in(out);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(text, "hello from " + job + "\n");
  EXPECT_NE(run_checked({"scontrol", "-o", "show", "job", job}).find("JobState=COMPLETED"), std::string::npos);

  std::vector<pid_t> pids;
  for (const char* d : {"munged", "slurmctld", "slurmd"}) {
    std::ifstream p(dir / "run" / (std::string(d) + ".pid"));
    pid_t pid = 0;
    ASSERT_TRUE(p >> pid) << d;
    EXPECT_EQ(kill(pid, 0), 0) << d << " not running";
    pids.push_back(pid);
  }
  cluster.reset();  // stop
  for (pid_t pid : pids) EXPECT_NE(kill(pid, 0), 0) << "pid " << pid << " survived stop";
}
