// Sweep manifests: `crackseg sweep plan` writes one JSON object per line,
//   {"id": 0, "overrides": ["optim.lr=0.001", "train.seed=1"], "hash": "3f0c9a..."}
// and each array task runs `crackseg train BASE.toml --task MANIFEST:$SLURM_ARRAY_TASK_ID`,
// which applies that line's overrides after the base file and before the command line's.
// "hash" is the resolved config's hash at planning time (hash.hpp); other members are kept
// (in `extra`) for the planner's own use. Blank lines and lines starting with '#' are skipped.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace crackseg::config {

struct ManifestTask {
  int64_t id = -1;
  std::vector<std::string> overrides;
  std::string hash;                              // empty when the line has none
  nlohmann::json extra = nlohmann::json::object();  // members other than id, overrides, hash
};

// Parses one manifest line; errors name `source`:`line_no` and the fault.
[[nodiscard]] ManifestTask parse_manifest_line(std::string_view line, const std::string& source,
                                               std::size_t line_no);
// Every task of a manifest, in file order; duplicate ids are an error.
[[nodiscard]] std::vector<ManifestTask> read_manifest(const std::filesystem::path& manifest);
// The task with `id`; InputError naming the manifest when it is absent.
[[nodiscard]] ManifestTask read_manifest_task(const std::filesystem::path& manifest, int64_t id);

struct TaskRef {
  std::filesystem::path manifest;
  int64_t id = -1;
};
// "MANIFEST:ID", split at the last ':' (paths may contain ':').
[[nodiscard]] TaskRef parse_task_ref(std::string_view spec);
// parse_task_ref + read_manifest_task.
[[nodiscard]] ManifestTask load_task(std::string_view spec);

}  // namespace crackseg::config
