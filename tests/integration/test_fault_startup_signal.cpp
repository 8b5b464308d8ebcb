// ctest-labels: fault integration
// ctest-timeout: 120
// Issue 12 item 3: SIGUSR1/SIGTERM during start-up (MPI_Init, config loading) must not kill
// `crackseg train`: main() blocks them first thing, and a request that arrived during
// start-up ends the run with 75 (requeue) before anything is trained or written.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

// The signal masks of `pid` from /proc (hex): "SigBlk" or "SigCgt".
unsigned long long proc_sigmask(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1), nullptr, 16);
  return 0;
}

void stop_during_startup(int sig) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path out = tmp / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  const auto p = test::spawn(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "train.log");
  // As soon as the process has taken charge of the signal (blocked in main, or a handler),
  // send it: that is start-up, long before the first training step.
  const unsigned long long bit = 1ull << (sig - 1);
  const auto t0 = std::chrono::steady_clock::now();
  while (((proc_sigmask(p.pid, "SigBlk") | proc_sigmask(p.pid, "SigCgt")) & bit) == 0 &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  ASSERT_EQ(kill(p.pid, sig), 0);
  const auto r = test::wait_for(p, 60);
  EXPECT_EQ(r.signal, 0) << "killed by signal " << r.signal << "\n" << r.output;
  EXPECT_EQ(r.code, 75) << r.output;
  EXPECT_NE(r.output.find("start-up"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out / "checkpoint.h5")) << "nothing may be trained\n" << r.output;
  EXPECT_FALSE(fs::exists(out / "metrics.csv")) << r.output;
}

}  // namespace

TEST(FaultStartupSignal, Usr1DuringStartupExits75WithoutTraining) { stop_during_startup(SIGUSR1); }

TEST(FaultStartupSignal, TermDuringStartupExits75WithoutTraining) { stop_during_startup(SIGTERM); }

TEST(FaultStartupSignal, OtherCommandsStillEndOnTerm) {
  // Only train turns TERM into a stop request; `sweep status --wait` on a folder that is not a
  // sweep ends at once anyway, so use a command that would run: a long synth.
  test::TempDir tmp;
  const auto p = test::spawn(test::crackseg({"synth", "--out", (tmp / "s.h5").string(), "--count", "100000",
                                             "--size", "256", "--workers", "1"}),
                             tmp / "synth.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  const auto r = test::wait_for(p, 30);
  EXPECT_FALSE(r.timed_out) << r.output;
  EXPECT_NE(r.code, 0) << r.output;
}
