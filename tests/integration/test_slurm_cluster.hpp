// The private one-node SLURM cluster of slurm/local-cluster.sh as an RAII guard for tests:
// started in a fresh temp folder, stopped in the destructor, and stopped by a watchdog child
// if the test process dies without unwinding (crash, ctest timeout's SIGKILL).
#pragma once
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "slurm/process.hpp"
#include "support/paths.hpp"

namespace crackseg::test {

class LocalCluster {
 public:
  // nodes > 1: compute nodes node1..nodeN on this host (local-cluster.sh --nodes).
  explicit LocalCluster(std::vector<std::string> extra_conf = {}, int nodes = 1) {
    script_ = (source_dir() / "slurm" / "local-cluster.sh").string();
    std::vector<std::string> argv = {"bash", script_, "start", dir_.path().string(), "--nodes", std::to_string(nodes)};
    for (auto& e : extra_conf) {
      argv.push_back("--extra");
      argv.push_back(e);
    }
    auto r = sweep::run_process(argv);
    if (r.exit_code != 0) {
      stop();
      throw std::runtime_error("local-cluster.sh start failed: " + r.err);
    }
    conf_ = (dir_.path() / "etc" / "slurm.conf").string();
    setenv("SLURM_CONF", conf_.c_str(), 1);
    start_watchdog();
  }
  ~LocalCluster() {
    stop();
    if (watchdog_ > 0) {
      kill(watchdog_, SIGKILL);
      waitpid(watchdog_, nullptr, 0);
    }
  }
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  void stop() {
    auto r = sweep::run_process({"bash", script_, "stop", dir_.path().string()});
    if (r.exit_code != 0) ADD_FAILURE() << "local-cluster.sh stop failed: " << r.err;
  }
  // A child that outlives an abnormal death of the test and then stops the daemons.
  void start_watchdog() {
    const pid_t parent = getpid();
    watchdog_ = fork();
    if (watchdog_ != 0) return;
    close_range(3, ~0u, 0);  // hold none of the test's pipes (see slurm/process.cpp)
    prctl(PR_SET_PDEATHSIG, SIGUSR2);
    signal(SIGUSR2, SIG_IGN);  // notice the death by polling instead of dying with the parent
    while (getppid() == parent) usleep(200000);
    execlp("bash", "bash", "-c", "bash \"$0\" stop \"$1\"; rm -rf \"$1\"", script_.c_str(), dir_.path().c_str(),
           static_cast<char*>(nullptr));
    _exit(127);
  }

  TempDir dir_;
  std::string script_;
  std::string conf_;
  pid_t watchdog_ = -1;
};

}  // namespace crackseg::test
