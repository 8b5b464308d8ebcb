// ctest-labels: fault integration
// ctest-timeout: 180
// Issue 12 item 4: one writer per run folder and per sweep folder. A second `crackseg train`
// into a folder in use, or a `sweep plan`/`submit` into a sweep folder in use, is refused
// (exit 2) naming the holder; concurrent plans never trip over each other's temp files.
#include <gtest/gtest.h>

#include "src/core/file_lock.hpp"
#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

const std::string kPid = "pid " + std::to_string(getpid());

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

}  // namespace

TEST(FaultConcurrent, SecondTrainingIntoAFolderInUseIsRefusedNamingTheHolder) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path out = tmp / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  {
    const FolderLock held(out, "test holder");
    const auto r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "b.log", 60);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find("in use by"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(kPid), std::string::npos) << "the refusal names the holder\n" << r.output;
    EXPECT_FALSE(fs::exists(out / "checkpoint.h5"));
    EXPECT_FALSE(fs::exists(out / "result.json"));
  }
  // Released with its holder: the run goes ahead.
  const auto r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "c.log", 120);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out / "result.json"));
}

TEST(FaultConcurrent, TwoTrainingsAtOnceOneRefuses) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path out = tmp / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  // A run long enough to still hold the folder when the second starts.
  const auto a = test::spawn(test::crackseg({"train", cfg.string(), "train.epochs=200", "--quiet"}), tmp / "a.log");
  const auto t0 = std::chrono::steady_clock::now();
  while (test::slurp(FolderLock::lock_file(out)).find("pid " + std::to_string(a.pid)) == std::string::npos &&
         std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const auto b = test::run_for(test::crackseg({"train", cfg.string(), "train.epochs=200", "--quiet"}), tmp / "b.log", 60);
  kill(a.pid, SIGTERM);  // stops at the next step with a checkpoint, exit 75
  const auto ra = test::wait_for(a, 60);
  EXPECT_EQ(b.code, 2) << b.output;
  EXPECT_NE(b.output.find("pid " + std::to_string(a.pid)), std::string::npos) << b.output;
  EXPECT_EQ(ra.code, 75) << ra.output;
}

TEST(FaultConcurrent, SweepPlanIntoAFolderInUseIsRefusedAndParallelPlansAgree) {
  test::TempDir tmp;
  write(tmp / "base.toml", "[data]\npath = \"data.h5\"\n[model]\nname = \"unet\"\nbase = 4\ndepth = 2\n[train]\nepochs = 1\n");
  write(tmp / "sweep.toml", "name = \"s\"\nbase = \"base.toml\"\nout = \"out\"\nseeds = [1, 2]\n"
                            "[grid]\n\"optim.lr\" = [1e-3, 1e-4, 1e-5]\n");
  fs::create_directories(tmp / "out");
  {
    const FolderLock held(tmp / "out", "test holder");
    const auto r = test::run_for(test::crackseg({"sweep", "plan", (tmp / "sweep.toml").string()}), tmp / "p.log", 60);
    EXPECT_EQ(r.code, 2) << r.output;
    EXPECT_NE(r.output.find(kPid), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(tmp / "out" / "manifest.jsonl"));
    const auto s = test::run_for(test::crackseg({"sweep", "submit", (tmp / "out").string(), "--dry-run"}),
                                 tmp / "s.log", 60);
    EXPECT_EQ(s.code, 2) << s.output;
  }
  // Four plans at once: each one plans or is refused; none fails on a temp file.
  std::vector<test::Proc> ps;
  for (int i = 0; i < 4; ++i)
    ps.push_back(test::spawn(test::crackseg({"sweep", "plan", (tmp / "sweep.toml").string()}),
                             tmp / ("p" + std::to_string(i) + ".log")));
  int planned = 0;
  for (const auto& p : ps) {
    const auto r = test::wait_for(p, 60);
    EXPECT_TRUE(r.code == 0 || (r.code == 2 && r.output.find("in use by") != std::string::npos)) << r.output;
    planned += r.code == 0;
  }
  EXPECT_GE(planned, 1);
  const std::string manifest = test::slurp(tmp / "out" / "manifest.jsonl");
  EXPECT_EQ(std::count(manifest.begin(), manifest.end(), '\n'), 6) << manifest;
  for (const auto& f : test::files_in(tmp / "out")) EXPECT_EQ(f.find(".tmp"), std::string::npos) << f;
}
