// ctest-labels: slurm
// ctest-link: crackseg_slurm
// ctest-timeout: 300
// Sweeps of real `crackseg train` runs through a one-node SLURM cluster: a 2x2 grid x 2 seeds
// on a tiny synthetic set (all tasks complete through sbatch + srun --mpi=pmix, the report
// has one row per configuration with the right mean and std), and preemption: USR1 delivered
// with `scancel --batch --signal=USR1` mid-run, the task checkpoints, exits 75, is requeued
// and completes with the same metrics as an uninterrupted run of the same task.
#include <gtest/gtest.h>

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
#include "test_slurm_cluster.hpp"

using namespace crackseg;
using namespace crackseg::sweep;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

nlohmann::json metrics_of(const fs::path& result) { return nlohmann::json::parse(slurp(result)).at("metrics"); }

class SlurmTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    bin_ = test::binary().string();
    auto help = run_process({bin_, "train", "--help"});
    if (help.exit_code != 0) return;  // each test skips: no train command in this build
    data_ = std::make_unique<test::TempDir>();
    chmod(data_->path().c_str(), 0755);
    auto r = run_process({bin_, "synth", "--out", (*data_ / "synth.h5").string(), "--count", "16", "--size", "32",
                          "--seed", "7"});
    if (r.exit_code != 0) throw std::runtime_error("crackseg synth failed: " + r.err);
    cluster_ = std::make_unique<test::LocalCluster>();
  }
  static void TearDownTestSuite() {
    cluster_.reset();
    data_.reset();
  }
  void SetUp() override {
    if (!cluster_) GTEST_SKIP() << "`crackseg train` is not in this build";
  }

  // A sweep folder whose base config trains a tiny U-Net on the synthetic set.
  fs::path make_sweep(const test::TempDir& tmp, const std::string& train_keys, const std::string& body) {
    chmod(tmp.path().c_str(), 0755);
    write(tmp / "base.toml", "[data]\npath = \"" + (*data_ / "synth.h5").string() +
                                 "\"\ncrop = 0\naugment = false\n[model]\nname = \"unet\"\nbase = 2\ndepth = 1\n"
                                 "dropout = 0.0\n[loss]\nname = \"bce\"\n[optim]\nname = \"adam\"\nlr = 1e-3\n"
                                 "[train]\nbatch = 4\nmicro_batch = 2\ndeterminism = \"bitwise\"\ndevice = \"cpu\"\n"
                                 "threads = 1\n" + train_keys);
    write(tmp / "sweep.toml", "base = \"base.toml\"\nout = \"out\"\n" + body +
                                  "\n[resources]\ncpus_per_rank = 1\nmax_concurrent = 2\ngrace = 30\n");
    return tmp / "sweep.toml";
  }

  static inline std::string bin_;
  static inline std::unique_ptr<test::TempDir> data_;
  static inline std::unique_ptr<test::LocalCluster> cluster_;
};

TEST_F(SlurmTrain, GridOfRealRunsCompletesAndReportsMeanAndStdOverSeeds) {
  test::TempDir tmp;
  const auto sweep = make_sweep(tmp, "epochs = 2\n",
                                "seeds = [1, 2]\nmetric = \"val_f1\"\n[grid]\n\"optim.lr\" = [1e-3, 1e-2]\n"
                                "\"model.dropout\" = [0.0, 0.2]\n");
  const fs::path dir = tmp / "out";
  auto r = run_process({bin_, "sweep", "submit", sweep.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  r = run_process({bin_, "sweep", "status", "--wait", dir.string()});
  ASSERT_NE(r.out.find("8 tasks: 8 done"), std::string::npos) << r.out;
  r = run_process({bin_, "sweep", "report", "--no-plots", dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const auto rep = build_report(dir, "val_f1", false);
  ASSERT_EQ(rep.configs.size(), 4u);
  ASSERT_EQ(rep.sort_metric, "val_f1");
  const auto tasks = read_manifest(dir / "manifest.jsonl");
  for (const auto& c : rep.configs) {
    // Recompute from the two seeds' result.json files.
    std::vector<double> v;
    for (const auto& t : tasks)
      if (t.configuration() == c.configuration) v.push_back(metrics_of(dir / t.dir / "result.json").at("val_f1"));
    ASSERT_EQ(v.size(), 2u);
    const double mean = (v[0] + v[1]) / 2, sd = std::fabs(v[0] - v[1]) / std::sqrt(2.0);
    EXPECT_DOUBLE_EQ(c.metrics.at("val_f1").mean, mean);
    EXPECT_NEAR(c.metrics.at("val_f1").std, sd, 1e-15);
  }
  for (size_t i = 1; i < rep.configs.size(); ++i)
    EXPECT_GE(rep.configs[i - 1].metrics.at("val_f1").mean, rep.configs[i].metrics.at("val_f1").mean);
  const auto md = slurp(dir / "results.md");
  EXPECT_NE(md.find("8 of 8 tasks have results; 4 configurations"), std::string::npos) << md;
  const auto csv = slurp(dir / "results.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 9);
}

TEST_F(SlurmTrain, PreemptedRunResumesToTheMetricsOfAnUninterruptedRun) {
  test::TempDir tmp;
  const auto sweep = make_sweep(tmp, "epochs = 60\n", "seeds = [3]\n");
  const auto spec = load_sweep(sweep);
  const auto plan = plan_sweep(spec, bin_);
  std::ostringstream log;
  const auto subs = submit_tasks(spec.out_dir, spec, plan.todo, false, log);
  ASSERT_EQ(subs.size(), 1u);
  const std::string job = subs[0].job_id + "_0";
  const fs::path tdir = spec.out_dir / "task-0000";
  // Signal once the first epoch is in metrics.csv: mid-run, after a checkpoint-worthy step.
  for (int i = 0; i < 600; ++i) {
    const auto csv = slurp(tdir / "metrics.csv");
    if (std::count(csv.begin(), csv.end(), '\n') >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(fs::exists(tdir / "result.json")) << "finished before the signal: give it more epochs";
  (void)run_checked({"scancel", "--batch", "--signal=USR1", job});
  // No `scontrol update StartTime=now` shortcut: the requeued task waits out its BeginTime
  // (about 11 s with cred_expire=10), which lets the first instance finish cleaning up on
  // the node; starting it earlier races that cleanup and can fail the launch.
  auto st = sweep_status(spec.out_dir);
  for (int i = 0; i < 900 && (st[0].state == TaskState::running || st[0].state == TaskState::pending); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    st = sweep_status(spec.out_dir);
  }
  const auto tlog = slurp(tdir / "task.log");
  std::ostringstream table;
  print_status(st, table);
  ASSERT_EQ(st[0].state, TaskState::done) << table.str() << tlog;
  EXPECT_NE(tlog.find("preempted: checkpoint written; requeueing " + job), std::string::npos) << tlog;
  EXPECT_NE(tlog.find("restart 1"), std::string::npos) << tlog;

  // The same task without interruption, outside SLURM, into another folder.
  auto r = run_process({bin_, "train", (tmp / "base.toml").string(), "--task",
                        (spec.out_dir / "manifest.jsonl").string() + ":0", "train.out=" + (tmp / "ref").string(),
                        "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(metrics_of(tdir / "result.json"), metrics_of(tmp / "ref" / "result.json"));
}

}  // namespace
