// ctest-link: crackseg_slurm
// Sweep planning without a cluster: manifest format, sweep expansion (grid, seeded random,
// seeds), deterministic ids and no re-planning of finished tasks, array chunking under
// MaxArraySize, the array script's quoting, and report math (mean ± sample std over seeds).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "slurm/manifest.hpp"
#include "slurm/plan.hpp"
#include "slurm/process.hpp"
#include "slurm/queue.hpp"
#include "slurm/report.hpp"
#include "slurm/sweep_spec.hpp"
#include "src/core/error.hpp"
#include "support/paths.hpp"

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

// A sweep folder with base.toml and sweep.toml; `body` follows the fixed header.
fs::path make_sweep(const test::TempDir& tmp, const std::string& body) {
  write(tmp / "base.toml", "[train]\nepochs = 1\n");
  write(tmp / "sweep.toml", "base = \"base.toml\"\nout = \"out\"\n" + body);
  return tmp / "sweep.toml";
}

}  // namespace

TEST(Manifest, LineRoundTripsAndKeepsHostileValuesLiteral) {
  ManifestTask t{7, {"model.name=\"; touch /tmp/x; \"", "a.b=line1\nline2", "c=$(id)"}, 126, "", "task-0007"};
  t.hash = task_hash(t.overrides, t.seed);
  const auto line = manifest_line(t);
  EXPECT_EQ(line.find('\n'), std::string::npos);  // one task per physical line
  const auto back = parse_manifest_line(line, "test");
  EXPECT_EQ(back.id, 7);
  EXPECT_EQ(back.overrides, t.overrides);
  EXPECT_EQ(back.seed, 126u);
  EXPECT_EQ(back.hash, t.hash);
  EXPECT_EQ(back.dir, "task-0007");
  EXPECT_EQ(back.all_overrides().back(), "train.seed=126");
  EXPECT_THROW((void)parse_manifest_line(R"({"id":1,"overrides":[],"seed":1,"hash":"x","dir":"../x"})", "t"), InputError);
  EXPECT_THROW((void)parse_manifest_line("{not json", "t"), InputError);
}

TEST(Manifest, HashIgnoresOverrideOrderButNotValuesOrSeed) {
  EXPECT_EQ(task_hash({"a=1", "b=2"}, 1), task_hash({"b=2", "a=1"}, 1));
  EXPECT_NE(task_hash({"a=1", "b=2"}, 1), task_hash({"a=1", "b=3"}, 1));
  EXPECT_NE(task_hash({"a=1"}, 1), task_hash({"a=1"}, 2));
  EXPECT_EQ(task_hash({}, 0).size(), 16u);
  EXPECT_EQ(task_dir_name(3), "task-0003");
  EXPECT_EQ(task_dir_name(12345), "task-12345");
}

TEST(Manifest, TaskRefAndLookupById) {
  auto r = parse_task_ref("/a:b/manifest.jsonl:12");
  EXPECT_EQ(r.manifest, fs::path("/a:b/manifest.jsonl"));
  EXPECT_EQ(r.id, 12);
  EXPECT_THROW((void)parse_task_ref("manifest.jsonl"), InputError);
  EXPECT_THROW((void)parse_task_ref("m.jsonl:x1"), InputError);
  EXPECT_THROW((void)parse_task_ref("m.jsonl:-1"), InputError);
  test::TempDir tmp;
  std::vector<ManifestTask> ts = {{5, {"x=1"}, 1, "h5", "task-0005"}, {2, {"x=2"}, 1, "h2", "task-0002"}};
  write_manifest(tmp / "m.jsonl", ts);
  EXPECT_EQ(read_manifest_task(tmp / "m.jsonl", 2).overrides, std::vector<std::string>{"x=2"});  // by id, not line
  EXPECT_THROW((void)read_manifest_task(tmp / "m.jsonl", 3), InputError);
  EXPECT_EQ(task_output_dir(tmp / "m.jsonl", ts[0]), tmp.path() / "task-0005");
}

TEST(SweepSpec, GridTimesSeedsInKeyOrderLastAxisFastest) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, R"(seeds = [1, 2]
[fixed]
"train.epochs" = 3
[grid]
"optim.lr" = [1e-3, 1e-4]
loss.name = ["bce", "weighted_bce"]
)");
  const auto spec = load_sweep(f);
  EXPECT_EQ(spec.swept_keys(), (std::vector<std::string>{"loss.name", "optim.lr"}));
  const auto t = expand(spec);
  ASSERT_EQ(t.size(), 8u);
  EXPECT_EQ(t[0].overrides, (std::vector<std::string>{"train.epochs=3", "loss.name=bce", "optim.lr=0.001"}));
  EXPECT_EQ(t[0].seed, 1u);
  EXPECT_EQ(t[1].seed, 2u);
  EXPECT_EQ(t[1].overrides, t[0].overrides);
  EXPECT_EQ(t[2].overrides[2], "optim.lr=0.0001");
  EXPECT_EQ(t[4].overrides[1], "loss.name=weighted_bce");
}

TEST(SweepSpec, RandomAxesAreSeededAndInRange) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, R"(seeds = [1]
[random]
samples = 50
seed = 9
"optim.lr" = { dist = "loguniform", low = 1e-5, high = 1e-2 }
"model.dropout" = { dist = "uniform", low = 0.1, high = 0.5 }
"model.base" = { dist = "randint", low = 8, high = 10 }
"loss.name" = { dist = "choice", values = ["bce", "dice"] }
)");
  const auto a = expand(load_sweep(f)), b = expand(load_sweep(f));
  ASSERT_EQ(a.size(), 50u);
  std::set<std::string> lrs, names, bases;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].overrides, b[i].overrides);
    for (const auto& o : a[i].overrides) {
      const auto v = o.substr(o.find('=') + 1);
      if (o.starts_with("optim.lr=")) {
        lrs.insert(v);
        EXPECT_GE(std::stod(v), 1e-5);
        EXPECT_LE(std::stod(v), 1e-2);
      } else if (o.starts_with("model.dropout=")) {
        EXPECT_GE(std::stod(v), 0.1);
        EXPECT_LE(std::stod(v), 0.5);
      } else if (o.starts_with("model.base=")) {
        bases.insert(v);
      } else if (o.starts_with("loss.name=")) {
        names.insert(v);
      }
    }
  }
  EXPECT_GT(lrs.size(), 45u);
  EXPECT_EQ(names, (std::set<std::string>{"bce", "dice"}));
  EXPECT_EQ(bases, (std::set<std::string>{"8", "9", "10"}));
  // A different random seed draws different values.
  write(f, slurp(f).replace(slurp(f).find("seed = 9"), 8, "seed = 8"));
  EXPECT_NE(expand(load_sweep(f))[0].overrides, a[0].overrides);
}

TEST(SweepSpec, StringsStayStringsInOverrides) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, "seeds = [1]\n[grid]\na = [\"bce\", \"1e-3\", \"true\", \"\", \"../x.h5\", 2, 0.5, false]\n");
  std::vector<std::string> got;
  for (const auto& t : expand(load_sweep(f))) got.push_back(t.overrides[0]);
  EXPECT_EQ(got, (std::vector<std::string>{"a=bce", "a=\"1e-3\"", "a=\"true\"", "a=\"\"", "a=\"../x.h5\"", "a=2",
                                            "a=0.5", "a=false"}));
}

TEST(SweepSpec, ErrorsNameTheKey) {
  test::TempDir tmp;
  auto expect_error = [&](const std::string& body, const std::string& needle) {
    auto f = make_sweep(tmp, body);
    try {
      (void)load_sweep(f);
      ADD_FAILURE() << "no error for: " << body;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("[grid]\nx = [1]\n", "seeds");
  expect_error("seeds = [1]\nbogus = 1\n", "bogus");
  expect_error("seeds = [1]\n[grid]\n\"train.seed\" = [1, 2]\n", "train.seed");
  expect_error("seeds = [1]\n[grid]\n\"a b\" = [1]\n", "grid.a b");
  expect_error("seeds = [1]\n[random]\nsamples = 2\nx = { dist = \"gauss\", low = 0, high = 1 }\n", "random.x.dist");
  expect_error("seeds = [1]\n[resources]\npartition = \"gpu\\n#SBATCH --x\"\n", "resources.partition");
  expect_error("seeds = [1]\n[resources]\nextra_sbatch = [\"--mem=1G\\nrm -rf /\"]\n", "resources.extra_sbatch");
}

TEST(SweepSpec, ReducedTableMergesOverTheFile) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, R"(seeds = [1, 2, 3]
[grid]
"optim.lr" = [1e-3, 1e-4]
"train.batch" = [32, 64, 128]
[reduced]
seeds = [1]
[reduced.grid]
"train.batch" = [8]
)");
  EXPECT_EQ(expand(load_sweep(f)).size(), 18u);
  const auto r = expand(load_sweep(f, true));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].overrides, (std::vector<std::string>{"optim.lr=0.001", "train.batch=8"}));
}

TEST(Plan, IdsAreDeterministicAndFinishedTasksAreNotPlannedAgain) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, "seeds = [1, 2]\n[grid]\n\"optim.lr\" = [1e-3, 1e-4]\n");
  auto r1 = plan_sweep(load_sweep(f), "/bin/crackseg");
  ASSERT_EQ(r1.tasks.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r1.tasks[i].id, i);
  EXPECT_EQ(r1.todo, (std::vector<int64_t>{0, 1, 2, 3}));
  const std::string first = slurp(tmp / "out" / "manifest.jsonl");
  // Task 2 finished: re-planning keeps every id and does not plan task 2 again.
  write(tmp / "out" / "task-0002" / "result.json", "{\"metrics\":{}}");
  auto r2 = plan_sweep(load_sweep(f), "/bin/crackseg");
  EXPECT_EQ(slurp(tmp / "out" / "manifest.jsonl"), first);
  EXPECT_EQ(r2.done, std::vector<int64_t>{2});
  EXPECT_EQ(r2.todo, (std::vector<int64_t>{0, 1, 3}));
  // Growing the sweep: old tasks keep their ids (and results), new ones are appended.
  write(f, "base = \"base.toml\"\nout = \"out\"\nseeds = [1, 2]\n[grid]\n\"optim.lr\" = [1e-2, 1e-3, 1e-4]\n");
  auto r3 = plan_sweep(load_sweep(f), "/bin/crackseg");
  ASSERT_EQ(r3.tasks.size(), 6u);
  for (const auto& t : r3.tasks) {
    if (t.overrides[0] == "optim.lr=0.01") {
      EXPECT_GE(t.id, 4);
    }
    if (t.overrides[0] == "optim.lr=0.0001" && t.seed == 1) {
      EXPECT_EQ(t.id, 2);
    }
  }
  EXPECT_EQ(r3.done, std::vector<int64_t>{2});
}

TEST(Plan, ArrayScriptQuotesEverythingAndNeverSeesOverrides) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, R"TOML(seeds = [1]
name = "quoting"
trainer = ["/opt/my dir/it's", "train"]
[grid]
"model.name" = ["\"; touch /tmp/pwned; \"", "$(reboot)"]
[resources]
ranks = 2
cpus_per_rank = 3
time = "00:10:00"
modules = ["openmpi/4.1; echo hi"]
max_concurrent = 2
grace = 45
)TOML");
  (void)plan_sweep(load_sweep(f), "/bin/crackseg");
  const auto s = slurp(tmp / "out" / "array.sbatch");
  EXPECT_EQ(s.find("touch"), std::string::npos);
  EXPECT_EQ(s.find("reboot"), std::string::npos);
  EXPECT_NE(s.find("'/opt/my dir/it'\\''s' 'train'"), std::string::npos) << s;
  EXPECT_NE(s.find("module load 'openmpi/4.1; echo hi'"), std::string::npos);
  EXPECT_NE(s.find("#SBATCH --signal=B:USR1@45\n"), std::string::npos);
  EXPECT_NE(s.find("#SBATCH --ntasks=2\n"), std::string::npos);
  EXPECT_NE(s.find("srun --mpi=pmix --ntasks=2 --cpus-per-task=3 "), std::string::npos);
  EXPECT_NE(s.find("scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\""), std::string::npos);
  EXPECT_NE(s.find("--task \"$MANIFEST:$ID\""), std::string::npos);
  // The values live in the manifest, literally.
  const auto m = read_manifest(tmp / "out" / "manifest.jsonl");
  EXPECT_EQ(m[0].overrides[0], R"X(model.name="\"; touch /tmp/pwned; \"")X");
  EXPECT_EQ(m[1].overrides[0], R"X(model.name="$(reboot)")X");
  // bash parses the script (syntax check only: -n executes nothing).
  auto r = run_process({"bash", "-n", (tmp / "out" / "array.sbatch").string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Plan, ShellQuoteSurvivesBash) {
  const std::string nasty = "a'b\"c$(x);`y` \\ \n z";
  auto r = run_process({"bash", "-c", "printf %s " + shell_quote(nasty)});
  EXPECT_EQ(r.out, nasty);
}

// A command started by run_process gets stdin/stdout/stderr and nothing else of the caller's:
// a descriptor opened without O_CLOEXEC (OpenMPI's singleton pipe to orted) must not reach it,
// or a daemon it starts keeps that pipe, and whoever waits for the pipe to close, open.
TEST(Process, CommandInheritsNoDescriptorBeyondStdio) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);  // no O_CLOEXEC
  const int dup_high = fcntl(p[1], F_DUPFD, 200);
  ASSERT_GE(dup_high, 200);
  // "; :" keeps bash from exec-ing ls in its own place (ls would list its directory handle).
  auto r = run_process({"bash", "-c", "ls /proc/$$/fd; :"});
  close(p[0]);
  close(p[1]);
  close(dup_high);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "0\n1\n2\n") << "descriptors the command inherited: " << r.out;
}

TEST(Submit, ChunksStayBelowMaxArraySize) {
  EXPECT_EQ(compress_ranges({5, 1, 2, 3, 9, 10, 3}), "1-3,5,9-10");
  auto c = split_array({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 4, 2);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].array, "0-3%2");
  EXPECT_EQ(c[1].offset, 4);
  EXPECT_EQ(c[1].array, "0-3%2");
  EXPECT_EQ(c[2].offset, 8);
  EXPECT_EQ(c[2].array, "0-1%2");
  EXPECT_EQ(c[2].ids, (std::vector<int64_t>{8, 9}));
  auto l = split_array({9, 2, 5}, 4, 0);  // a resubmission list
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0].array, "2");
  EXPECT_EQ(l[1].array, "1");
  EXPECT_EQ(l[2].array, "1");
  EXPECT_EQ(l[2].offset, 8);
  EXPECT_EQ(split_array({0, 1, 2}, 1001, 0).at(0).array, "0-2");
}

TEST(Report, MeanAndSampleStdOverSeedsSortedByMetric) {
  test::TempDir tmp;
  auto f = make_sweep(tmp, "seeds = [1, 2, 3]\nmetric = \"val_f1\"\n[grid]\n\"optim.lr\" = [0.1, 0.2]\n");
  auto plan = plan_sweep(load_sweep(f), "/bin/crackseg");
  const fs::path dir = tmp / "out";
  // lr=0.1: val_f1 0.5, 0.6, 0.7 (mean 0.6, std 0.1); lr=0.2: 0.8, 0.9 and one missing task.
  const double f1[6] = {0.5, 0.6, 0.7, 0.8, 0.9, -1};
  for (int i = 0; i < 5; ++i)
    write(dir / task_dir_name(i) / "result.json",
          "{\"metrics\":{\"final\":{\"val_f1\":" + std::to_string(f1[i]) + ",\"loss\":" + std::to_string(i) +
              "},\"best\":{\"val_f1\":1.0}},\"config_hash\":\"x\"}");
  const auto r = build_report(dir, "", false);
  EXPECT_EQ(r.sort_metric, "final.val_f1");
  EXPECT_EQ(r.metric_names, (std::vector<std::string>{"best.val_f1", "final.loss", "final.val_f1"}));
  ASSERT_EQ(r.configs.size(), 2u);
  EXPECT_EQ(r.configs[0].configuration, "optim.lr=0.2");  // higher mean first
  const auto& hi = r.configs[0].metrics.at("final.val_f1");
  EXPECT_EQ(hi.n, 2);
  EXPECT_NEAR(hi.mean, 0.85, 1e-12);
  EXPECT_NEAR(hi.std, std::sqrt(0.005), 1e-12);
  const auto& lo = r.configs[1].metrics.at("final.val_f1");
  EXPECT_EQ(lo.n, 3);
  EXPECT_NEAR(lo.mean, 0.6, 1e-12);
  EXPECT_NEAR(lo.std, 0.1, 1e-12);
  EXPECT_EQ(r.configs[1].metrics.at("final.loss").mean, 1.0);
  const auto asc = build_report(dir, "loss", true);
  EXPECT_EQ(asc.sort_metric, "final.loss");
  EXPECT_EQ(asc.configs[0].configuration, "optim.lr=0.1");
  EXPECT_THROW((void)build_report(dir, "nope", false), InputError);

  std::ostringstream log;
  const auto files = write_report(dir, r, "", log);
  const auto csv = slurp(files.csv);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "id,seed,optim.lr,overrides,best.val_f1,final.loss,final.val_f1");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 6);  // header + 5 tasks with results
  const auto md = slurp(files.md);
  // Default columns: the ranking metric (no other default column is in these results);
  // mean ± std [95% t interval: t(0.975, 1) = 12.7062, t(0.975, 2) = 4.3027].
  EXPECT_NE(md.find("| rank | optim.lr | n | final.val_f1 |\n"), std::string::npos) << md;
  EXPECT_NE(md.find("| 1 | 0.2 | 2 | 0.8500 ± 0.0707 [0.2147, 1.4853] |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 2 | 0.1 | 3 | 0.6000 ± 0.1000 [0.3516, 0.8484] |"), std::string::npos) << md;
  EXPECT_NE(md.find("5 of 6 tasks have results"), std::string::npos);
  EXPECT_TRUE(files.plots.empty());  // no plot script given
}

TEST(Report, SingleValueStatistics) {
  auto s = mean_std({0.25});
  EXPECT_EQ(s.n, 1);
  EXPECT_EQ(s.mean, 0.25);
  EXPECT_EQ(s.std, 0.0);
  EXPECT_EQ(mean_std({}).n, 0);
}

// Tasks that span nodes: the array script asks for the layout in #SBATCH lines and repeats it
// on srun (which no longer inherits --cpus-per-task since SLURM 22.05); OpenMP threads are
// pinned only inside a per-task CPU set; GPU tasks get one GPU per task.
TEST(Plan, MultiNodeCpuAndGpuLayouts) {
  test::TempDir tmp;
  auto script = [&](const std::string& resources) {
    auto f = make_sweep(tmp, "seeds = [1]\nname = \"multi\"\n[resources]\n" + resources);
    (void)plan_sweep(load_sweep(f), "/bin/crackseg");
    auto r = run_process({"bash", "-n", (tmp / "out" / "array.sbatch").string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return slurp(tmp / "out" / "array.sbatch");
  };
  auto s = script("nodes = 4\nntasks_per_node = 8\ncpus_per_rank = 4\n");
  EXPECT_NE(s.find("#SBATCH --ntasks=32\n#SBATCH --nodes=4\n#SBATCH --ntasks-per-node=8\n#SBATCH --cpus-per-task=4\n"),
            std::string::npos) << s;
  EXPECT_EQ(s.find("--gpus-per-task"), std::string::npos) << s;
  EXPECT_NE(s.find("export OMP_NUM_THREADS=4\n"), std::string::npos) << s;
  EXPECT_NE(s.find("srun --mpi=pmix --ntasks=32 --nodes=4 --ntasks-per-node=8 --cpus-per-task=4 --cpu-bind=cores "),
            std::string::npos) << s;
  EXPECT_NE(s.find("export OMP_PROC_BIND=close OMP_PLACES=cores"), std::string::npos) << s;

  s = script("nodes = 2\nntasks_per_node = 4\ncpus_per_rank = 8\ngpus = 1\n");
  EXPECT_NE(s.find("#SBATCH --ntasks=8\n#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=4\n#SBATCH --cpus-per-task=8\n"
                   "#SBATCH --gpus-per-task=1\n"),
            std::string::npos) << s;
  EXPECT_NE(s.find("srun --mpi=pmix --ntasks=8 --nodes=2 --ntasks-per-node=4 --cpus-per-task=8 --gpus-per-task=1 "),
            std::string::npos) << s;

  // Only one of the two: ranks fixes the other.
  s = script("ranks = 6\nntasks_per_node = 3\n");
  EXPECT_NE(s.find("#SBATCH --ntasks=6\n#SBATCH --ntasks-per-node=3\n"), std::string::npos) << s;
  EXPECT_EQ(s.find("#SBATCH --nodes="), std::string::npos) << s;
  // A one-node sweep keeps its old script: no node lines.
  s = script("ranks = 2\n");
  EXPECT_EQ(s.find("--nodes"), std::string::npos) << s;
  EXPECT_EQ(s.find("--ntasks-per-node"), std::string::npos) << s;

  // The layout survives sweep.json (status/resubmit re-read it).
  auto f = make_sweep(tmp, "seeds = [1]\n[resources]\nnodes = 3\nntasks_per_node = 2\n");
  const auto back = spec_from_json(spec_to_json(load_sweep(f)));
  EXPECT_EQ(back.resources.nodes, 3);
  EXPECT_EQ(back.resources.ntasks_per_node, 2);
  EXPECT_EQ(back.resources.ranks, 6);
}

TEST(Plan, MultiNodeResourceErrorsNameTheKey) {
  test::TempDir tmp;
  auto expect_error = [&](const std::string& body, const std::string& needle) {
    auto f = make_sweep(tmp, "seeds = [1]\n[resources]\n" + body);
    try {
      (void)load_sweep(f);
      ADD_FAILURE() << "no error for: " << body;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("ranks = 5\nnodes = 2\nntasks_per_node = 2\n", "resources.ranks");
  expect_error("ranks = 5\nntasks_per_node = 2\n", "not a multiple of ntasks_per_node");
  expect_error("ranks = 1\nnodes = 2\n", "cannot span nodes = 2");
  expect_error("nodes = -1\n", "nodes and ntasks_per_node >= 0");
  expect_error("ntasks_per_nodes = 2\n", "resources.ntasks_per_nodes");
}

// launch/scripts/train.sbatch, the template users copy: it parses, forwards USR1/TERM to the
// step and requeues on 75, repeats the layout on srun, pins threads only inside a CPU set and
// serves GPU jobs (one task per GPU) from the same script.
TEST(TrainSbatch, TemplateCarriesTheMultiNodeLaunch) {
  const auto path = test::source_dir() / "launch" / "scripts" / "train.sbatch";
  const auto s = slurp(path);
  auto r = run_process({"bash", "-n", path.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const char* needle :
       {"#SBATCH --signal=B:USR1@", "#SBATCH --requeue", "srun --mpi=pmix", "--cpus-per-task=\"${SLURM_CPUS_PER_TASK:-1}\"",
        "--cpu-bind=cores", "OMP_PROC_BIND=close OMP_PLACES=cores", "--gpus-per-task", "trap 'kill -USR1",
        "scontrol requeue \"$SLURM_JOB_ID\"", "sbatch --nodes=2 --ntasks-per-node=", "data.stage=node"})
    EXPECT_NE(s.find(needle), std::string::npos) << "train.sbatch lacks: " << needle;
}
