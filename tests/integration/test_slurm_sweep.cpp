// ctest-labels: slurm
// ctest-link: crackseg_slurm
// ctest-timeout: 240
// Sweeps through a real one-node SLURM cluster (slurm/local-cluster.sh, MaxArraySize=4):
// a 2x2 grid x 2 seeds split into two arrays, with hostile values that must never execute;
// a task made to fail, shown by status and resubmitted alone; a preempted task (USR1 by
// `scancel --batch --signal=USR1`) that is requeued and completes from its checkpoint.
// The trainer here is a small script the test writes (it reads the manifest line itself, as
// `crackseg train --task` does); test_slurm_train.cpp runs the real `crackseg train`.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "slurm/manifest.hpp"
#include "slurm/plan.hpp"
#include "slurm/process.hpp"
#include "slurm/queue.hpp"
#include "slurm/report.hpp"
#include "slurm/sweep_spec.hpp"
#include "test_slurm_cluster.hpp"

using namespace crackseg;
using namespace crackseg::sweep;
namespace fs = std::filesystem;

namespace {

test::LocalCluster* g_cluster = nullptr;

class ClusterEnv : public ::testing::Environment {
 public:
  void SetUp() override { cluster_ = std::make_unique<test::LocalCluster>(std::vector<std::string>{"MaxArraySize=4"}); g_cluster = cluster_.get(); }
  void TearDown() override { g_cluster = nullptr; cluster_.reset(); }

 private:
  std::unique_ptr<test::LocalCluster> cluster_;
};
[[maybe_unused]] auto* g_env = ::testing::AddGlobalTestEnvironment(new ClusterEnv);

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Fake trainer: `fake.sh BASE --task MANIFEST:ID`. Metric val_f1 = x/10 + seed/100 for the
// override x=N. `fail=1` fails (exit 3) unless $PWD/fixed exists; `slow=1` waits for USR1
// on its first run, "checkpoints" and exits 75, and completes on the rerun.
const char* kFakeTrainer = R"SH(#!/bin/bash
spec=$3; manifest=${spec%:*}; id=${spec##*:}
line=$(grep -F "\"id\":$id," "$manifest")
dir=$(dirname "$manifest")/$(printf 'task-%04d' "$id")
x=$(sed -n 's/.*"x=\([0-9]*\)".*/\1/p' <<<"$line")
seed=$(sed -n 's/.*"seed":\([0-9]*\).*/\1/p' <<<"$line")
echo "fake trainer: task $id x=$x seed=$seed restart=${SLURM_RESTART_COUNT:-0}"
if [[ $line == *'"fail=1"'* && ! -f fixed ]]; then echo "failing on purpose"; exit 3; fi
if [[ $line == *'"slow=1"'* && ! -f $dir/checkpoint ]]; then
  trap 'echo checkpoint >"$dir/checkpoint"; echo "USR1: checkpoint written"; exit 75' USR1
  touch "$dir/started"
  for _ in $(seq 600); do sleep 0.1; done
  exit 4
fi
awk -v x="${x:-0}" -v s="$seed" 'BEGIN { printf "{\"metrics\":{\"final\":{\"val_f1\":%.17g}}}\n", x/10 + s/100 }' >"$dir/result.json.tmp"
awk -v x="${x:-0}" -v s="$seed" 'BEGIN { print "epoch,val_f1"; for (e = 1; e <= 3; e++) printf "%d,%.6f\n", e, (x/10 + s/100) * e / 3 }' >"$dir/metrics.csv"
mv "$dir/result.json.tmp" "$dir/result.json"
)SH";

struct Sweep {
  test::TempDir tmp;
  SweepSpec spec;
  fs::path dir;
  explicit Sweep(const std::string& body) {
    write(tmp / "fake.sh", kFakeTrainer);
    chmod((tmp / "fake.sh").c_str(), 0755);
    chmod(tmp.path().c_str(), 0755);
    write(tmp / "base.toml", "[train]\nepochs = 1\n");
    write(tmp / "sweep.toml", "base = \"base.toml\"\nout = \"out\"\ntrainer = [\"" + (tmp / "fake.sh").string() +
                                  "\"]\n" + body + "\n[resources]\ncpus_per_rank = 1\nmax_concurrent = 2\ngrace = 30\n");
    spec = load_sweep(tmp / "sweep.toml");
    dir = spec.out_dir;
  }
};

std::vector<TaskStatus> wait_idle(const fs::path& dir, double timeout_s = 90) {
  const auto t0 = std::chrono::steady_clock::now();
  while (true) {
    auto st = sweep_status(dir);
    bool busy = false;
    for (const auto& s : st) busy |= s.state == TaskState::running || s.state == TaskState::pending;
    if (!busy) return st;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_s) {
      std::ostringstream os;
      print_status(st, os);
      ADD_FAILURE() << "sweep still busy after " << timeout_s << " s:\n" << os.str();
      return st;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

}  // namespace

TEST(SlurmSweep, GridThroughSbatchSplitsUnderMaxArraySizeAndNeverExecutesValues) {
  ASSERT_NE(g_cluster, nullptr);
  EXPECT_EQ(cluster_max_array_size(), 4);
  const std::string pwned_a = "/tmp/pwned_" + std::to_string(getpid()) + "_a";
  const std::string pwned_b = "/tmp/pwned_" + std::to_string(getpid()) + "_b";
  // Values as TOML literal strings: the first is  "; touch /tmp/pwned_<pid>_a; "
  Sweep s("seeds = [1, 2]\n[grid]\nx = [1, 2]\ny = ['\"; touch " + pwned_a + "; \"', '$(touch " + pwned_b +
          ")']\n");
  const auto plan = plan_sweep(s.spec, test::binary());
  ASSERT_EQ(plan.tasks.size(), 8u);
  std::ostringstream log;
  const auto subs = submit_tasks(s.dir, s.spec, plan.todo, false, log);
  ASSERT_EQ(subs.size(), 2u) << log.str();  // 8 tasks, MaxArraySize 4: two arrays
  EXPECT_EQ(subs[0].array, "0-3%2");
  EXPECT_EQ(subs[0].offset, 0);
  EXPECT_EQ(subs[1].array, "0-3%2");
  EXPECT_EQ(subs[1].offset, 4);
  EXPECT_EQ(read_jobs(s.dir).size(), 2u);

  const auto st = wait_idle(s.dir);
  for (const auto& t : st) EXPECT_EQ(t.state, TaskState::done) << "task " << t.task.id << ": " << t.log_tail;
  EXPECT_FALSE(fs::exists(pwned_a));
  EXPECT_FALSE(fs::exists(pwned_b));
  // Each array task ran the task of its own id (chunk offset added by the script).
  for (const auto& t : plan.tasks)
    EXPECT_NE(slurp(s.dir / t.dir / "task.log").find("fake trainer: task " + std::to_string(t.id) + " "), std::string::npos);

  const auto r = build_report(s.dir, "val_f1", false);
  ASSERT_EQ(r.tasks.size(), 8u);
  ASSERT_EQ(r.configs.size(), 4u);
  for (const auto& c : r.configs) {
    const auto& m = c.metrics.at("final.val_f1");
    EXPECT_EQ(m.n, 2);
    const double x = c.configuration.find("x=2") != std::string::npos ? 2 : 1;
    EXPECT_NEAR(m.mean, x / 10 + 0.015, 1e-12);        // seeds 1 and 2
    EXPECT_NEAR(m.std, std::sqrt(0.00005), 1e-12);     // sample std of {0.01, 0.02}
  }
  EXPECT_NE(r.configs[0].configuration.find("x=2"), std::string::npos);  // best first
  std::ostringstream rl;
  const auto files = write_report(s.dir, r, "", rl);
  EXPECT_EQ(std::count(std::istreambuf_iterator<char>(*std::make_unique<std::ifstream>(files.csv)), {}, '\n'), 9);
}

TEST(SlurmSweep, FailedTaskShowsExitCodeAndResubmitRunsOnlyIt) {
  ASSERT_NE(g_cluster, nullptr);
  Sweep s("seeds = [1]\n[grid]\nfail = [0, 1]\n");
  const auto plan = plan_sweep(s.spec, test::binary());
  std::ostringstream log;
  (void)submit_tasks(s.dir, s.spec, plan.todo, false, log);
  auto st = wait_idle(s.dir);
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].state, TaskState::done);
  ASSERT_EQ(st[1].state, TaskState::failed);
  ASSERT_TRUE(st[1].exit_code.has_value());
  EXPECT_EQ(*st[1].exit_code, 3);
  EXPECT_NE(st[1].log_tail.find("failing on purpose"), std::string::npos) << st[1].log_tail;
  std::ostringstream table;
  print_status(st, table);
  EXPECT_NE(table.str().find("failed"), std::string::npos);
  EXPECT_NE(table.str().find("1 done"), std::string::npos) << table.str();

  const auto done_mtime = fs::last_write_time(s.dir / "task-0000" / "result.json");
  write(s.tmp / "fixed", "");  // the cause of the failure is gone
  std::vector<int64_t> retry;
  for (const auto& t : st)
    if (t.state == TaskState::failed || t.state == TaskState::missing) retry.push_back(t.task.id);
  EXPECT_EQ(retry, std::vector<int64_t>{1});
  const auto subs = submit_tasks(s.dir, s.spec, retry, false, log);
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].array, "1%2");
  st = wait_idle(s.dir);
  EXPECT_EQ(st[0].state, TaskState::done);
  EXPECT_EQ(st[1].state, TaskState::done) << st[1].log_tail;
  EXPECT_EQ(fs::last_write_time(s.dir / "task-0000" / "result.json"), done_mtime);  // not rerun
}

TEST(SlurmSweep, PreemptedTaskIsRequeuedAndCompletesFromItsCheckpoint) {
  ASSERT_NE(g_cluster, nullptr);
  Sweep s("seeds = [5]\n[fixed]\nslow = 1\nx = 3\n");
  const auto plan = plan_sweep(s.spec, test::binary());
  std::ostringstream log;
  const auto subs = submit_tasks(s.dir, s.spec, plan.todo, false, log);
  ASSERT_EQ(subs.size(), 1u);
  const std::string job = subs[0].job_id + "_0";
  const fs::path tdir = s.dir / "task-0000";
  for (int i = 0; i < 300 && !fs::exists(tdir / "started"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(tdir / "started")) << slurp(tdir / "task.log");
  (void)run_checked({"scancel", "--batch", "--signal=USR1", job});
  // No `scontrol update StartTime=now` shortcut: the requeued task waits out its BeginTime
  // (about 11 s with cred_expire=10), which lets the first instance finish cleaning up on
  // the node; starting it earlier races that cleanup and can fail the launch.
  const auto st = wait_idle(s.dir);
  ASSERT_EQ(st[0].state, TaskState::done) << slurp(tdir / "task.log");
  const auto tlog = slurp(tdir / "task.log");
  EXPECT_NE(tlog.find("USR1: forwarding"), std::string::npos) << tlog;
  EXPECT_NE(tlog.find("USR1: checkpoint written"), std::string::npos) << tlog;
  EXPECT_NE(tlog.find("preempted: checkpoint written; requeueing " + job), std::string::npos) << tlog;
  EXPECT_NE(tlog.find("restart=1"), std::string::npos) << tlog;
  const auto res = nlohmann::json::parse(slurp(tdir / "result.json"));
  EXPECT_DOUBLE_EQ(res["metrics"]["final"]["val_f1"].get<double>(), 3.0 / 10 + 5.0 / 100);
}

// The same loop through the `crackseg sweep` command line, as a user runs it.
TEST(SlurmSweep, CommandLinePlanSubmitStatusReport) {
  ASSERT_NE(g_cluster, nullptr);
  Sweep s("seeds = [1, 2]\nmetric = \"val_f1\"\n[grid]\nx = [1, 2]\n");
  const std::string bin = test::binary().string();
  auto r = run_process({bin, "sweep", "submit", (s.tmp / "sweep.toml").string()});  // plans first
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("planned 4 tasks"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("submitted array job"), std::string::npos) << r.out;
  r = run_process({bin, "sweep", "status", "--wait", s.dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("4 tasks: 4 done 0 running 0 pending 0 failed 0 missing"), std::string::npos) << r.out;
  // Submitting again finds nothing to do: done tasks never run twice.
  r = run_process({bin, "sweep", "submit", s.dir.string()});
  EXPECT_NE(r.out.find("nothing to submit"), std::string::npos) << r.out;
  r = run_process({bin, "sweep", "report", s.dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto md = slurp(s.dir / "results.md");
  EXPECT_NE(md.find("| 1 | 2 | 2 | 0.2150 ± 0.0071 [0.1515, 0.2785] |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 2 | 1 | 2 | 0.1150 ± 0.0071 [0.0515, 0.1785] |"), std::string::npos) << md;
  if (r.out.find("plots skipped") == std::string::npos) {
    EXPECT_TRUE(fs::exists(s.dir / "plots" / "metric_vs_x.png")) << r.out;
    EXPECT_TRUE(fs::exists(s.dir / "plots" / "curves_best.png")) << r.out;
  } else {
    EXPECT_NE(r.out.find("matplotlib"), std::string::npos) << r.out;  // the only acceptable reason
  }
}
