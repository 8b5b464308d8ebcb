// A sweep file (TOML) and its expansion into tasks. Example (experiments/ has real ones):
//
//   name  = "unet-grid"
//   base  = "../configs/unet_synth.toml"   # relative to this file
//   out   = "../runs/unet-grid"            # relative to this file; manifest, script, tasks
//   seeds = [126, 127, 128]
//   metric = "val_f1"                      # what `report` sorts by (optional)
//   workdir = "."                          # tasks' working directory (relative paths in the
//                                          # configs resolve here); default: this file's folder
//   [fixed]                                # overrides for every task
//   "train.epochs" = 20
//   [grid]                                 # cartesian product; dotted keys or nested tables
//   "optim.lr" = [1e-3, 1e-4]
//   "loss.name" = ["bce", "weighted_bce"]
//   [random]                               # `samples` draws, each crossed with the grid
//   samples = 8
//   seed = 1
//   "model.dropout" = { dist = "uniform", low = 0.0, high = 0.5 }
//   "optim.lr" = { dist = "loguniform", low = 1e-5, high = 1e-2 }
//   "model.name" = { dist = "choice", values = ["unet", "spiral_net"] }
//   [resources]
//   ranks = 2; cpus_per_rank = 4; gpus = 0; time = "02:00:00"; partition = "gpu"
//   nodes = 2; ntasks_per_node = 8         # tasks spanning nodes (ranks = nodes x per node)
//   account = "proj"; extra_sbatch = ["--mem=16G"]; modules = ["openmpi/4.1"]
//   max_concurrent = 8; grace = 300       # USR1 this many seconds before the time limit
//   [reduced]                              # merged over the file by `plan --reduced`
//   seeds = [1]
//   [reduced.fixed]
//   "train.epochs" = 1
//
// Axes are expanded in key order (std::map), the last axis fastest, seeds innermost, so the
// same file always yields the same task ids.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace crackseg::sweep {

struct Resources {
  int ranks = 1;
  int cpus_per_rank = 1;
  int gpus = 0;  // per rank (--gpus-per-task): one rank per GPU with gpus = 1
  // Tasks that span nodes: --nodes and --ntasks-per-node (0 = not given, SLURM decides).
  // With both, ranks = nodes x ntasks_per_node; with one, ranks must be a multiple of it.
  int nodes = 0;
  int ntasks_per_node = 0;
  std::string time;
  std::string partition;
  std::string account;
  std::vector<std::string> extra_sbatch;  // each one `--option[=value]`, one #SBATCH line
  std::vector<std::string> modules;       // `module load` each, quoted
  int max_concurrent = 0;                 // 0: no %K limit
  int grace_s = 120;
};

struct GridAxis {
  std::string key;
  std::vector<std::string> values;  // already formatted as override values
};

struct RandomAxis {
  enum class Dist { choice, uniform, loguniform, randint } dist = Dist::uniform;
  std::string key;
  double low = 0, high = 1;
  std::vector<std::string> choices;
};

struct SweepSpec {
  std::filesystem::path sweep_file;   // absolute
  std::string name;
  std::filesystem::path base_config;  // absolute
  std::filesystem::path out_dir;      // absolute
  std::filesystem::path workdir;      // absolute; tasks run here, outputs go to their own folder
  std::vector<uint64_t> seeds;
  std::string metric;
  std::vector<std::string> fixed;     // key=value for every task
  std::vector<GridAxis> grid;
  std::vector<RandomAxis> random;
  int samples = 0;
  uint64_t random_seed = 0;
  Resources resources;
  // argv prefix that runs one task; `<this crackseg> train` when empty. It gets
  // `BASE.toml --task MANIFEST:ID` appended.
  std::vector<std::string> trainer;

  // Keys swept (grid and random), in expansion order: the axes of report's plots.
  [[nodiscard]] std::vector<std::string> swept_keys() const;
};

// Parses and validates; `reduced` merges the file's [reduced] table over it first.
// out_override (non-empty) replaces `out`. Errors name the file and the key.
[[nodiscard]] SweepSpec load_sweep(const std::filesystem::path& file, bool reduced = false,
                                   const std::filesystem::path& out_override = {});

// One task per (grid point x random sample x seed): overrides = fixed + grid + random values.
struct PlannedTask {
  std::vector<std::string> overrides;
  uint64_t seed = 0;
};
[[nodiscard]] std::vector<PlannedTask> expand(const SweepSpec& spec);

// Shortest text that reads back as the same double, always with '.' or 'e' so it stays a float.
[[nodiscard]] std::string format_double(double v);

// The resolved spec as JSON (DIR/sweep.json) and back: submit/status/report read it.
[[nodiscard]] nlohmann::json spec_to_json(const SweepSpec& spec);
[[nodiscard]] SweepSpec spec_from_json(const nlohmann::json& j);

}  // namespace crackseg::sweep
