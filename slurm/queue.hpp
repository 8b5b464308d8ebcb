// Talking to SLURM for a planned sweep: submit (array chunks under MaxArraySize), status
// (result files + squeue + scontrol records + the array script's own exit file), resubmit.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "slurm/manifest.hpp"
#include "slurm/sweep_spec.hpp"

namespace crackseg::sweep {

// One sbatch call: array indices are task ids minus `offset`, all below MaxArraySize.
struct ArrayChunk {
  int64_t offset = 0;
  std::vector<int64_t> ids;  // task ids, ascending
  std::string array;         // the --array value, e.g. "0-999%8" or "3,7,10-12%8"
};

// "0-3,7,9-12" from indices (sorted, deduplicated first).
[[nodiscard]] std::string compress_ranges(std::vector<int64_t> idx);
// Chunk k holds ids in [k*max_array_size, (k+1)*max_array_size); offset = k*max_array_size.
[[nodiscard]] std::vector<ArrayChunk> split_array(std::vector<int64_t> ids, int64_t max_array_size,
                                                  int max_concurrent);

// MaxArraySize from `scontrol show config`.
[[nodiscard]] int64_t cluster_max_array_size();

struct Submission {
  std::string job_id;  // the array job id (empty on --dry-run)
  int64_t offset = 0;
  std::string array;
  std::vector<int64_t> ids;
  std::string submitted;  // UTC time
};
[[nodiscard]] std::vector<Submission> read_jobs(const std::filesystem::path& dir);

// Submits `ids` of the sweep in DIR (one sbatch per chunk) and appends them to DIR/jobs.json;
// on dry_run prints the sbatch command lines to `log` and submits nothing.
std::vector<Submission> submit_tasks(const std::filesystem::path& dir, const SweepSpec& spec,
                                     const std::vector<int64_t>& ids, bool dry_run, std::ostream& log);

enum class TaskState { done, running, pending, failed, missing };
[[nodiscard]] const char* state_name(TaskState s);

// SLURM's ExitCode "code:signal" as a shell would report it: 128 + signal for a task ended by
// a signal ("0:15" -> 143, not 0), else the code.
[[nodiscard]] int slurm_exit_code(const std::string& exit_code);

struct TaskStatus {
  ManifestTask task;
  TaskState state = TaskState::missing;
  std::string slurm_state;        // RUNNING, PENDING, FAILED, TIMEOUT... when known
  std::optional<int> exit_code;   // for failed tasks, when known
  std::string job;                // ARRAYJOB_INDEX of the latest submission, if any
  std::string log_tail;           // last lines of the task's log, for failed tasks
};
[[nodiscard]] std::vector<TaskStatus> sweep_status(const std::filesystem::path& dir, int log_lines = 5);
void print_status(const std::vector<TaskStatus>& st, std::ostream& os);

}  // namespace crackseg::sweep
