// ctest-labels: fault integration
// ctest-timeout: 120
// Issue 12 item 6: a sweep plan is consistent. Duplicate tasks (a `choice` of 2 values drawn
// 4 times, grid values 1e-3 and 0.001) are planned once, identically on the first plan and on
// every re-plan; a task's identity is its resolved config, base file contents included, so
// changing the base file makes new tasks instead of reusing the old base's results.
#include <gtest/gtest.h>

#include <set>

#include "slurm/manifest.hpp"
#include "tests/support/fault.hpp"

namespace fs = std::filesystem;
using namespace crackseg;

namespace {

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

struct Planned {
  int code;
  std::string output;
  std::vector<sweep::ManifestTask> tasks;
};

Planned plan(const test::TempDir& tmp, const std::string& tag) {
  const auto r = test::run_for(test::crackseg({"sweep", "plan", (tmp / "sweep.toml").string()}), tmp / (tag + ".log"), 60);
  Planned p{r.code, r.output, {}};
  if (r.code == 0) p.tasks = sweep::read_manifest(tmp / "out" / "manifest.jsonl");
  return p;
}

std::set<std::string> hashes(const std::vector<sweep::ManifestTask>& ts) {
  std::set<std::string> h;
  for (const auto& t : ts) h.insert(t.hash);
  return h;
}

const char* kBase = "[data]\npath = \"data.h5\"\n[model]\nname = \"unet\"\nbase = 4\ndepth = 2\n[train]\nepochs = 1\n";

}  // namespace

TEST(FaultSweepPlan, RepeatedChoiceDrawsArePlannedOnceOnEveryPlan) {
  test::TempDir tmp;
  write(tmp / "base.toml", kBase);
  write(tmp / "sweep.toml", "name = \"s\"\nbase = \"base.toml\"\nout = \"out\"\nseeds = [1]\n"
                            "[random]\nsamples = 4\nseed = 3\n"
                            "\"loss.name\" = { dist = \"choice\", values = [\"bce\", \"dice\"] }\n");
  const auto first = plan(tmp, "first");
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_LE(first.tasks.size(), 2u) << first.output;
  EXPECT_EQ(hashes(first.tasks).size(), first.tasks.size());
  const auto again = plan(tmp, "again");
  ASSERT_EQ(again.code, 0) << "a re-plan must accept what the first plan accepted\n" << again.output;
  EXPECT_EQ(test::slurp(tmp / "out" / "manifest.jsonl"), [&] {
    std::string s;
    for (const auto& t : first.tasks) s += sweep::manifest_line(t) + "\n";
    return s;
  }()) << "the same tasks, ids and hashes";
}

TEST(FaultSweepPlan, TwoSpellingsOfOneValueAreOneTask) {
  test::TempDir tmp;
  write(tmp / "base.toml", kBase);
  write(tmp / "sweep.toml", "name = \"s\"\nbase = \"base.toml\"\nout = \"out\"\nseeds = [1, 2]\n"
                            "[grid]\n\"optim.lr\" = [1e-3, 0.001, 0.0001]\n");
  const auto first = plan(tmp, "first");
  ASSERT_EQ(first.code, 0) << first.output;
  EXPECT_EQ(first.tasks.size(), 4u) << first.output;  // 2 distinct rates x 2 seeds
  const auto again = plan(tmp, "again");
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(again.tasks.size(), 4u);
  EXPECT_EQ(hashes(again.tasks), hashes(first.tasks));
}

TEST(FaultSweepPlan, ChangingTheBaseFileMakesNewTasks) {
  test::TempDir tmp;
  write(tmp / "base.toml", kBase);
  write(tmp / "sweep.toml", "name = \"s\"\nbase = \"base.toml\"\nout = \"out\"\nseeds = [1]\n"
                            "[grid]\n\"optim.lr\" = [1e-3, 1e-4]\n");
  const auto first = plan(tmp, "first");
  ASSERT_EQ(first.code, 0) << first.output;
  ASSERT_EQ(first.tasks.size(), 2u);
  // Pretend task 0 finished under the old base.
  fs::create_directories(tmp / "out" / first.tasks[0].dir);
  write(tmp / "out" / first.tasks[0].dir / "result.json", "{}\n");
  write(tmp / "base.toml", std::string(kBase) + "[loss]\nname = \"dice\"\n");
  const auto again = plan(tmp, "again");
  ASSERT_EQ(again.code, 0) << again.output;
  ASSERT_EQ(again.tasks.size(), 2u);
  for (const auto& t : again.tasks) {
    EXPECT_EQ(hashes(first.tasks).count(t.hash), 0u) << "task " << t.id << " kept the old base's identity";
    EXPECT_NE(t.dir, first.tasks[0].dir) << "the old base's result must not count for the new base";
  }
  EXPECT_NE(again.output.find("0 already done"), std::string::npos) << again.output;
}

// Issue 12 item 10: an extra_sbatch entry that sbatch would split at its spaces fails at
// `plan`, naming it, instead of at `submit`.
TEST(FaultSweepPlan, ExtraSbatchWithSpacesIsRefusedAtPlan) {
  test::TempDir tmp;
  write(tmp / "base.toml", kBase);
  const std::string head = "name = \"s\"\nbase = \"base.toml\"\nout = \"out\"\nseeds = [1]\n[grid]\n\"optim.lr\" = [1e-3]\n";
  write(tmp / "sweep.toml", head + "[resources]\nextra_sbatch = [\"--comment=two words\"]\n");
  auto p = plan(tmp, "bad");
  EXPECT_EQ(p.code, 2) << p.output;
  EXPECT_NE(p.output.find("--comment=two words"), std::string::npos) << p.output;
  write(tmp / "sweep.toml", head + "[resources]\nextra_sbatch = [\"--mem 16G\", \"--exclusive\"]\n");
  p = plan(tmp, "good");
  EXPECT_EQ(p.code, 0) << p.output;
}
