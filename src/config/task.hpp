// `crackseg train BASE.toml --task MANIFEST:ID`: the overrides a sweep task applies. The
// manifest format belongs to the sweep planner (slurm/manifest.hpp); this adapter is
// header-only so crackseg_train needs no link dependency on crackseg_slurm (the crackseg
// binary links both).
//
// Order of precedence, lowest first: BASE.toml < the task's overrides < train.seed=<seed> <
// train.out=<manifest folder>/<task dir> < overrides on the command line.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "slurm/manifest.hpp"

namespace crackseg::config {

struct TaskOverrides {
  std::vector<std::string> overrides;  // apply in order, before the command line's
  std::string task_hash;               // the planner's identity of the task (not the config hash)
  int64_t id = 0;
};

[[nodiscard]] inline TaskOverrides task_overrides(std::string_view spec) {
  const sweep::TaskRef ref = sweep::parse_task_ref(spec);
  const sweep::ManifestTask task = sweep::read_manifest_task(ref.manifest, ref.id);
  TaskOverrides out{task.all_overrides(), task.hash, task.id};
  // Quoted as a TOML basic string (JSON's escapes are a subset), so any path stays a string.
  out.overrides.push_back("train.out=" + nlohmann::json(sweep::task_output_dir(ref.manifest, task).string()).dump());
  return out;
}

}  // namespace crackseg::config
