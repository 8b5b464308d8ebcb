// `crackseg sweep report DIR`: results.csv (one row per task), results.md (one row per
// configuration = overrides without the seed: mean ± sample std over seeds of each metric,
// sorted by a chosen metric) and plots through scripts/plot.py.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "slurm/manifest.hpp"

namespace crackseg::sweep {

struct Stat {
  double mean = 0;
  double std = 0;  // sample standard deviation (n-1); 0 when n == 1
  int n = 0;
};
[[nodiscard]] Stat mean_std(const std::vector<double>& v);

struct TaskRow {
  ManifestTask task;
  std::map<std::string, double> metrics;  // result.json "metrics", nested keys dotted
};

struct ConfigRow {
  std::string configuration;               // overrides joined, seed excluded
  std::vector<std::string> overrides;
  std::vector<int64_t> task_ids;
  std::vector<uint64_t> seeds;
  std::map<std::string, Stat> metrics;
};

struct SweepReport {
  std::vector<std::string> swept;         // axes
  std::vector<std::string> metric_names;  // union over tasks, sorted
  std::string sort_metric;                // resolved name ("" when no results)
  bool ascending = false;
  std::vector<TaskRow> tasks;             // tasks with a result.json, by id
  int64_t planned = 0;
  std::vector<ConfigRow> configs;         // sorted best first
};

// Flattens the numbers of a JSON object into dotted keys ({"final":{"val_f1":1}} -> final.val_f1).
void flatten_metrics(const nlohmann::json& j, const std::string& prefix, std::map<std::string, double>& out);

// metric "" -> the sweep's `metric`, else val_f1, else the first metric. A bare name also
// matches final.<name>, then best.<name>, then any *.<name>.
[[nodiscard]] SweepReport build_report(const std::filesystem::path& dir, const std::string& metric, bool ascending);

struct ReportFiles {
  std::filesystem::path csv, md, plots;  // plots empty when skipped
  std::string plot_note;                 // why plots were skipped
};
ReportFiles write_report(const std::filesystem::path& dir, const SweepReport& r, const std::filesystem::path& plot_script,
                         std::ostream& log);

// scripts/plot.py next to the binary's source or install tree, or $CRACKSEG_PLOT_SCRIPT.
[[nodiscard]] std::optional<std::filesystem::path> find_plot_script(const std::filesystem::path& exe);

}  // namespace crackseg::sweep
