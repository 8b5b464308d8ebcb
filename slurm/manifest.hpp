// The sweep manifest: DIR/manifest.jsonl, one JSON object per line, one line per task.
//
//   {"id": 3, "overrides": ["optim.lr=0.001", "loss.name=bce"], "seed": 127,
//    "hash": "9f1c2e...", "dir": "task-0003"}
//
// id        deterministic: the task's position in the expanded sweep on first planning; a
//           re-plan keeps the ids of tasks it already knows (matched by hash) and appends new ones.
// overrides config overrides in `key=value` form, exactly as on the `crackseg train` command
//           line; they never pass through a shell (the array script hands crackseg the
//           manifest path and the id, and crackseg reads the line itself).
// seed      the run seed; applied after the overrides as `train.seed=<seed>`.
// hash      16 hex digits, FNV-1a 64 of the sorted overrides and the seed: the task's identity.
// dir       the task's output folder, relative to the manifest's folder; `crackseg train
//           --task MANIFEST:ID` writes result.json, metrics.csv and checkpoints there
//           (i.e. train.out = <manifest folder>/<dir>).
//
// `crackseg train BASE.toml --task MANIFEST:ID` finds the line whose "id" is ID (not the line
// number) with read_manifest_task().
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace crackseg::sweep {

struct ManifestTask {
  int64_t id = 0;
  std::vector<std::string> overrides;  // without the seed
  uint64_t seed = 0;
  std::string hash;
  std::string dir;

  // overrides followed by "train.seed=<seed>": what `crackseg train` applies, in order.
  [[nodiscard]] std::vector<std::string> all_overrides() const;
  // overrides joined by spaces: the configuration a task belongs to, seeds pooled.
  [[nodiscard]] std::string configuration() const;
};

// FNV-1a 64 of the sorted overrides and the seed, as 16 lowercase hex digits.
[[nodiscard]] std::string task_hash(std::vector<std::string> overrides, uint64_t seed);
// "task-0007" (at least 4 digits).
[[nodiscard]] std::string task_dir_name(int64_t id);

[[nodiscard]] std::string manifest_line(const ManifestTask& t);  // one JSON line, no newline
// Throws InputError naming `where` (file:line) on malformed input.
[[nodiscard]] ManifestTask parse_manifest_line(std::string_view line, const std::string& where);
[[nodiscard]] std::vector<ManifestTask> read_manifest(const std::filesystem::path& path);
void write_manifest(const std::filesystem::path& path, const std::vector<ManifestTask>& tasks);

// The task with "id" == id; InputError if the file or the id is missing.
[[nodiscard]] ManifestTask read_manifest_task(const std::filesystem::path& manifest, int64_t id);

// "--task MANIFEST:ID" split at the last ':' (paths may contain ':').
struct TaskRef {
  std::filesystem::path manifest;
  int64_t id = 0;
};
[[nodiscard]] TaskRef parse_task_ref(std::string_view spec);

// <manifest folder>/<task.dir>, absolute.
[[nodiscard]] std::filesystem::path task_output_dir(const std::filesystem::path& manifest,
                                                    const ManifestTask& task);

}  // namespace crackseg::sweep
