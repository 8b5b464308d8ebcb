// `crackseg sweep plan`: expands a sweep file into DIR/manifest.jsonl, DIR/array.sbatch and
// DIR/sweep.json (the resolved spec that submit/status/report read).
#pragma once
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "slurm/manifest.hpp"
#include "slurm/sweep_spec.hpp"

namespace crackseg::sweep {

struct PlanResult {
  std::vector<ManifestTask> tasks;  // every task of the sweep, by id
  std::vector<int64_t> done;        // ids whose result.json exists: not run again
  std::vector<int64_t> todo;        // ids still to run
  // Expanded points that repeat an earlier task (same identity: a `choice` drawn twice, grid
  // values 1e-3 and 0.001): one line each, "<configuration> = task <id>"; not planned twice.
  std::vector<std::string> duplicates;
};

// Task ids: a task already in DIR/manifest.jsonl (same hash) keeps its id; new tasks take
// the next free ids in expansion order. So a fresh plan numbers tasks 0..N-1 in expansion
// order, and growing a sweep never renames a finished task.
// `crackseg_exe`: absolute path of the binary that runs tasks (default trainer).
// A task's identity (manifest "hash") is `task_identity(all overrides incl. train.seed)`:
// `crackseg sweep plan` passes the hash of the task's resolved config (base file contents,
// defaults and overrides; train.out left out), so spellings of one value (1e-3, 0.001) are
// one task and a changed base file makes new tasks. Without it: task_hash(overrides, seed).
// Tasks with the same identity are one task, on the first plan and on every re-plan alike
// (PlanResult::duplicates counts the extra ones).
using TaskIdentity = std::function<std::string(const std::vector<std::string>& overrides)>;
[[nodiscard]] PlanResult plan_sweep(const SweepSpec& spec, const std::filesystem::path& crackseg_exe,
                                    const TaskIdentity& task_identity = {});

// The array script (see plan.cpp for what it does); exposed for tests.
[[nodiscard]] std::string array_script(const SweepSpec& spec, const std::filesystem::path& crackseg_exe);

// Paths inside a sweep folder.
inline std::filesystem::path manifest_path(const std::filesystem::path& dir) { return dir / "manifest.jsonl"; }
inline std::filesystem::path script_path(const std::filesystem::path& dir) { return dir / "array.sbatch"; }
inline std::filesystem::path spec_path(const std::filesystem::path& dir) { return dir / "sweep.json"; }
inline std::filesystem::path jobs_path(const std::filesystem::path& dir) { return dir / "jobs.json"; }

// DIR, or a sweep file whose `out` is DIR: the folder a command works on.
[[nodiscard]] SweepSpec load_planned(const std::filesystem::path& dir);
[[nodiscard]] bool task_done(const std::filesystem::path& dir, const ManifestTask& t);

}  // namespace crackseg::sweep
