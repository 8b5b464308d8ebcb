// ctest-labels: fault integration
// ctest-timeout: 240
// Issue 12 item 7 / issue 13 item 1: rerunning the command of a finished run (directly, or
// as a sweep task SLURM ran again) says so and exits 0 without touching any file:
// result.json, metrics.csv and checkpoint.h5 stay byte-identical.
#include <gtest/gtest.h>

#include <map>

#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

struct Snapshot {
  std::map<std::string, std::string> bytes;
  std::map<std::string, fs::file_time_type> mtimes;
};

Snapshot snapshot(const fs::path& dir) {
  Snapshot s;
  for (const char* f : {"result.json", "metrics.csv", "checkpoint.h5"}) {
    s.bytes[f] = test::slurp(dir / f);
    s.mtimes[f] = fs::last_write_time(dir / f);
  }
  return s;
}

void expect_untouched(const Snapshot& a, const fs::path& dir) {
  const Snapshot b = snapshot(dir);
  for (const auto& [f, bytes] : a.bytes) {
    EXPECT_FALSE(bytes.empty()) << f;
    EXPECT_EQ(b.bytes.at(f), bytes) << f << " changed";
    EXPECT_EQ(b.mtimes.at(f), a.mtimes.at(f)) << f << " rewritten";
  }
}

}  // namespace

TEST(FaultFinishedRerun, RerunningAFinishedRunTouchesNothing) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path out = tmp / "run";
  const fs::path cfg = test::tiny_config(tmp.path(), data, out, "");
  auto r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "a.log", 120);
  ASSERT_EQ(r.code, 0) << r.output;
  const Snapshot before = snapshot(out);
  r = test::run_for(test::crackseg({"train", cfg.string(), "--quiet"}), tmp / "b.log", 120);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("finished run"), std::string::npos) << r.output;
  expect_untouched(before, out);
  // A different config (more epochs) is not "finished": it continues from the checkpoint.
  r = test::run_for(test::crackseg({"train", cfg.string(), "train.epochs=2", "--quiet"}), tmp / "c.log", 120);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(r.output.find("finished run"), std::string::npos) << r.output;
  EXPECT_NE(test::slurp(out / "result.json"), before.bytes.at("result.json"));
}

TEST(FaultFinishedRerun, ASweepTaskRunAgainTouchesNothing) {
  test::TempDir tmp;
  const fs::path data = test::tiny_dataset(tmp.path());
  const fs::path base = test::tiny_config(tmp.path(), data, tmp / "unused", "");
  std::ofstream(tmp / "sweep.toml") << "name = \"s\"\nbase = \"run.toml\"\nout = \"out\"\nseeds = [1]\n"
                                       "[grid]\n\"optim.lr\" = [1e-3]\n";
  auto r = test::run_for(test::crackseg({"sweep", "plan", (tmp / "sweep.toml").string()}), tmp / "p.log", 60);
  ASSERT_EQ(r.code, 0) << r.output;
  const std::string task = (tmp / "out" / "manifest.jsonl").string() + ":0";
  r = test::run_for(test::crackseg({"train", base.string(), "--task", task, "--quiet"}), tmp / "a.log", 120);
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path dir = tmp / "out" / "task-0000";
  const Snapshot before = snapshot(dir);
  r = test::run_for(test::crackseg({"train", base.string(), "--task", task, "--quiet"}), tmp / "b.log", 120);
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("finished run"), std::string::npos) << r.output;
  expect_untouched(before, dir);
}
