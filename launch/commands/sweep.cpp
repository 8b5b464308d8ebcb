// `crackseg sweep plan|submit|status|resubmit|report`: hyperparameter sweeps as SLURM array
// jobs (slurm/). Each task runs `srun crackseg train BASE.toml --task MANIFEST:ID`.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <thread>

#include "launch/command.hpp"
#include "slurm/plan.hpp"
#include "slurm/queue.hpp"
#include "slurm/report.hpp"
#include "src/config/config.hpp"
#include "src/core/error.hpp"
#include "src/core/file_lock.hpp"

namespace {
namespace fs = std::filesystem;
using namespace crackseg::sweep;

struct Opts {
  std::string target;  // SWEEP.toml or DIR
  std::string out;
  bool reduced = false;
  bool dry_run = false;
  bool wait = false;
  int lines = 5;
  std::string metric;
  bool ascending = false;
  bool no_plots = false;
  std::vector<std::string> columns;
  std::string format = "md";
  int compare = 3;
  CLI::App *plan = nullptr, *submit = nullptr, *status = nullptr, *resubmit = nullptr, *report = nullptr;
} o;

fs::path self_exe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw crackseg::Error("cannot read /proc/self/exe: " + ec.message());
  return p;
}

// A task's identity: the hash of its resolved config (base file contents, defaults, the
// task's overrides and seed), without train.out (the task folder follows from the identity).
// A sweep with its own `trainer` may use keys crackseg does not know: its identity hashes the
// base file's bytes with the task's overrides and seed instead.
crackseg::sweep::TaskIdentity resolved_identity(const SweepSpec& spec) {
  if (!spec.trainer.empty()) {
    std::ifstream in(spec.base_config, std::ios::binary);
    std::string base_bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return [base_bytes](const std::vector<std::string>& overrides) {
      auto sorted = overrides;
      std::sort(sorted.begin(), sorted.end());
      std::string text = base_bytes;
      for (const auto& ov : sorted) text += '\xff' + ov;
      return crackseg::config::hex16(crackseg::config::fnv1a64(text));
    };
  }
  return [base = spec.base_config](const std::vector<std::string>& overrides) {
    try {
      auto values = crackseg::config::load_run_config(base, overrides).values;
      values["train"].erase("out");
      return crackseg::config::config_hash(values);
    } catch (const crackseg::InputError& e) {
      std::string task;
      for (const auto& ov : overrides) task += " " + ov;
      throw crackseg::InputError("sweep task with" + task + " does not resolve against " + base.string() + ": " + e.what());
    }
  };
}

PlanResult plan(const SweepSpec& spec) {
  auto r = plan_sweep(spec, self_exe(), resolved_identity(spec));
  if (!r.duplicates.empty()) {
    std::cout << r.duplicates.size() << " expanded point(s) repeat a task (same resolved config), planned once:\n";
    for (const auto& d : r.duplicates) std::cout << "  " << d << "\n";
  }
  return r;
}

// The sweep folder: DIR itself, or the `out` of a sweep file (planned first when asked).
// With `lock`: the folder's lock is taken (before planning) and handed to the caller.
fs::path sweep_dir(bool plan_if_file, std::unique_ptr<crackseg::FolderLock>* lock = nullptr,
                   const char* what = "crackseg sweep") {
  if (fs::is_regular_file(o.target)) {
    auto spec = load_sweep(o.target, o.reduced, o.out);
    if (lock) *lock = std::make_unique<crackseg::FolderLock>(spec.out_dir, what);
    if (plan_if_file) {
      auto r = plan(spec);
      std::cout << "planned " << r.tasks.size() << " tasks in " << spec.out_dir.string() << " (" << r.done.size()
                << " already done)\n";
    }
    return spec.out_dir;
  }
  if (!fs::is_directory(o.target)) throw crackseg::InputError("no such sweep file or folder: " + o.target);
  const fs::path dir = fs::absolute(o.target).lexically_normal();
  if (lock) *lock = std::make_unique<crackseg::FolderLock>(dir, what);
  return dir;
}

int run_plan() {
  auto spec = load_sweep(o.target, o.reduced, o.out);
  const crackseg::FolderLock lock(spec.out_dir, "crackseg sweep plan");
  auto r = plan(spec);
  std::cout << "planned " << r.tasks.size() << " tasks: " << r.todo.size() << " to run, " << r.done.size()
            << " already done (result.json present, not run again)\n"
            << "  manifest     " << manifest_path(spec.out_dir).string() << "\n"
            << "  array script " << script_path(spec.out_dir).string() << "\n"
            << "next: crackseg sweep submit " << spec.out_dir.string() << "\n";
  return 0;
}

std::vector<int64_t> not_done(const fs::path& dir) {
  std::vector<int64_t> ids;
  for (const auto& t : read_manifest(manifest_path(dir)))
    if (!task_done(dir, t)) ids.push_back(t.id);
  return ids;
}

int run_submit() {
  std::unique_ptr<crackseg::FolderLock> lock;  // one submit at a time: never two array jobs
  const fs::path dir = sweep_dir(true, &lock, "crackseg sweep submit");
  const auto spec = load_planned(dir);
  if (!o.dry_run)
    for (const auto& s : sweep_status(dir))
      if (s.state == TaskState::running || s.state == TaskState::pending)
        throw crackseg::InputError("task " + std::to_string(s.task.id) + " of " + dir.string() +
                                   " is still " + state_name(s.state) + " (" + s.job +
                                   "); use `crackseg sweep resubmit` for failed or missing tasks");
  submit_tasks(dir, spec, not_done(dir), o.dry_run, std::cout);
  return 0;
}

int run_status() {
  const fs::path dir = sweep_dir(false);
  auto st = sweep_status(dir, o.lines);
  while (o.wait && std::any_of(st.begin(), st.end(), [](const TaskStatus& s) {
           return s.state == TaskState::running || s.state == TaskState::pending;
         })) {
    std::this_thread::sleep_for(std::chrono::seconds(2));
    st = sweep_status(dir, o.lines);
  }
  print_status(st, std::cout);
  return 0;
}

int run_resubmit() {
  std::unique_ptr<crackseg::FolderLock> lock;
  const fs::path dir = sweep_dir(false, &lock, "crackseg sweep resubmit");
  std::vector<int64_t> ids;
  for (const auto& s : sweep_status(dir))
    if (s.state == TaskState::failed || s.state == TaskState::missing) ids.push_back(s.task.id);
  std::cout << ids.size() << " failed or missing tasks" << (ids.empty() ? "" : ": " + compress_ranges(ids)) << "\n";
  submit_tasks(dir, load_planned(dir), ids, o.dry_run, std::cout);
  return 0;
}

int run_report() {
  const fs::path dir = sweep_dir(false);
  ReportOptions ro;
  ro.metric = o.metric;
  ro.ascending = o.ascending;
  ro.columns = o.columns;
  ro.compare_top = o.compare;
  const auto format = parse_table_format(o.format);
  const auto r = build_report(dir, ro);
  fs::path script;
  if (!o.no_plots)
    if (auto s = find_plot_script(self_exe())) script = *s;
  auto f = write_report(dir, r, script, std::cout);
  std::cout << format_table(r, format, dir.filename().string()) << "\n";
  std::cout << r.tasks.size() << " of " << r.planned << " tasks have results, " << r.configs.size()
            << " configurations" << (r.sort_metric.empty() ? "" : ", ranked by " + r.sort_metric) << "\n"
            << "  " << f.csv.string() << " (every task)\n  " << f.md.string() << "\n  " << f.summary_csv.string()
            << "\n  " << f.tex.string() << "\n";
  if (o.no_plots) std::cout << "  plots skipped (--no-plots)\n";
  else if (f.plots.empty()) std::cout << "  plots skipped: " << f.plot_note << "\n";
  else std::cout << "  " << f.plots.string() << "/\n";
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "sweep",
    .help = "hyperparameter sweeps as SLURM array jobs: plan, submit, status, resubmit, report",
    .setup =
        [](CLI::App& app) {
          app.require_subcommand(1);
          o.plan = app.add_subcommand("plan", "expand SWEEP.toml into DIR/manifest.jsonl and DIR/array.sbatch");
          o.plan->add_option("sweep", o.target, "sweep file (TOML)")->required();
          o.plan->add_flag("--reduced", o.reduced, "merge the file's [reduced] table first (small version)");
          o.plan->add_option("--out", o.out, "sweep folder instead of the file's `out`");
          o.submit = app.add_subcommand("submit", "sbatch the tasks without results (plans first if given a file)");
          o.submit->add_option("target", o.target, "sweep folder or sweep file")->required();
          o.submit->add_flag("--dry-run", o.dry_run, "print the sbatch commands, submit nothing");
          o.submit->add_flag("--reduced", o.reduced, "with a sweep file: its [reduced] version");
          o.submit->add_option("--out", o.out, "with a sweep file: sweep folder instead of its `out`");
          o.status = app.add_subcommand("status", "table of tasks: done, running, pending, failed, missing");
          o.status->add_option("dir", o.target, "sweep folder (or sweep file)")->required();
          o.status->add_option("--lines", o.lines, "log lines shown per failed task");
          o.status->add_flag("--wait", o.wait, "wait until no task is running or pending");
          o.resubmit = app.add_subcommand("resubmit", "submit only failed or missing tasks");
          o.resubmit->add_option("dir", o.target, "sweep folder (or sweep file)")->required();
          o.resubmit->add_flag("--dry-run", o.dry_run, "print the sbatch commands, submit nothing");
          o.report = app.add_subcommand("report", "results.csv, results.md / results_summary.csv / results.tex (mean ± std, 95% CI over seeds), paired comparison, plots");
          o.report->add_option("dir", o.target, "sweep folder (or sweep file)")->required();
          o.report->add_option("--metric", o.metric,
                               "metric to rank by (default: the sweep's, else val_f1, at the best epoch: best_val_f1)");
          o.report->add_option("--columns", o.columns,
                               "table columns, comma separated (default: params, train_time_s, epochs, best_epoch, the "
                               "ranking metric, test metrics of the best checkpoint)")
              ->delimiter(',');
          o.report->add_option("--format", o.format, "table printed: md | csv | tex (all three are written)")
              ->capture_default_str();
          o.report->add_option("--compare", o.compare, "configurations in the paired comparison (best vs the next ones)")
              ->capture_default_str();
          o.report->add_flag("--ascending", o.ascending, "smaller is better (losses)");
          o.report->add_flag("--no-plots", o.no_plots, "skip the plots (scripts/plot.py)");
        },
    .run = []() -> int {
      if (o.plan->parsed()) return run_plan();
      if (o.submit->parsed()) return run_submit();
      if (o.status->parsed()) return run_status();
      if (o.resubmit->parsed()) return run_resubmit();
      return run_report();
    },
    .needs_mpi = false,
}};
}  // namespace
