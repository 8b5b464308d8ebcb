// `crackseg sweep report DIR`: results.csv (one row per task, every number), and one table
// per configuration (= overrides without the seed) in Markdown, CSV and LaTeX
// (results.md, results_summary.csv, results.tex): the swept values, n seeds, then the chosen
// columns (`--columns`; default a compact set: params, train time, epochs, best epoch, the
// best-epoch validation metric, the test metrics of the best checkpoint), each as mean ±
// sample std with a 95% confidence interval (Student t, n-1 degrees of freedom), ranked by
// the best-epoch value of the metric. The top configurations are compared pairwise over the
// test images from the tasks' best_test_per_image.csv (else test_per_image.csv) files
// (paired bootstrap CI of the mean per-image F1 difference, fixed seed; Wilcoxon signed-rank
// p). Plots via scripts/plot.py.
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
  double ci95 = 0;  // half-width of the 95% t interval, t(0.975, n-1) * std / sqrt(n); NaN when n < 2
};
[[nodiscard]] Stat mean_std(const std::vector<double>& v);

// Student t distribution: CDF and the quantile (inverse CDF) for df > 0 degrees of freedom.
[[nodiscard]] double student_t_cdf(double t, double df);
[[nodiscard]] double student_t_quantile(double p, double df);

// Paired comparison of two configurations over the same test images.
struct PairedTest {
  std::string a, b;        // configurations (a ranked above b)
  int64_t images = 0;      // images present for both (mean over the seeds both have)
  int seeds = 0;           // seeds with per-image files for both
  double mean_diff = 0;    // mean over images of (F1_a - F1_b)
  double ci_lo = 0, ci_hi = 0;  // 95% paired bootstrap percentile interval of mean_diff
  double wilcoxon_p = 1;   // two-sided signed-rank p (normal approximation, tie-corrected)
  std::string note;        // why it could not be computed (missing files), else empty
};
// diffs: one paired difference per image. Bootstrap: `resamples` draws of the images with
// replacement from a fixed-seed generator, 2.5% / 97.5% percentiles of the mean.
void paired_statistics(const std::vector<double>& diffs, PairedTest& out, int resamples = 10000, uint64_t seed = 20240613);
// Wilcoxon signed-rank: zeros dropped, average ranks for ties; returns the two-sided p of
// the normal approximation with tie correction (1 when every difference is zero).
[[nodiscard]] double wilcoxon_signed_rank_p(const std::vector<double>& diffs);

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
  std::vector<std::string> columns;       // table columns after the axes and n (resolved names)
  std::vector<PairedTest> paired;         // best configuration against the next ones
};

struct ReportOptions {
  std::string metric;                     // "" = the sweep's metric, else val_f1 (best epoch preferred)
  bool ascending = false;
  std::vector<std::string> columns;       // empty = the compact default set
  int compare_top = 3;                    // configurations in the paired comparison
};

// Values taken from result.json besides "metrics": parameters -> params, timings.total_s ->
// train_time_s, epochs_done -> epochs, best.epoch -> best_epoch.
// The compact default columns, those present in the results.
[[nodiscard]] std::vector<std::string> default_columns(const SweepReport& r);

enum class TableFormat { md, csv, tex };
[[nodiscard]] TableFormat parse_table_format(const std::string& text);  // InputError naming it
// The configuration table in one format (Markdown also has the paired comparison).
[[nodiscard]] std::string format_table(const SweepReport& r, TableFormat f, const std::string& title);

// Flattens the numbers of a JSON object into dotted keys ({"final":{"val_f1":1}} -> final.val_f1).
void flatten_metrics(const nlohmann::json& j, const std::string& prefix, std::map<std::string, double>& out);

// metric "" -> the sweep's `metric`, else val_f1, else the first metric. A bare name also
// matches final.<name>, then best.<name>, then any *.<name>.
[[nodiscard]] SweepReport build_report(const std::filesystem::path& dir, const std::string& metric, bool ascending);
[[nodiscard]] SweepReport build_report(const std::filesystem::path& dir, const ReportOptions& opt);

struct ReportFiles {
  std::filesystem::path csv, md, plots;  // plots empty when skipped
  std::filesystem::path summary_csv, tex;
  std::string plot_note;                 // why plots were skipped
};
ReportFiles write_report(const std::filesystem::path& dir, const SweepReport& r, const std::filesystem::path& plot_script,
                         std::ostream& log);

// scripts/plot.py next to the binary's source or install tree, or $CRACKSEG_PLOT_SCRIPT.
[[nodiscard]] std::optional<std::filesystem::path> find_plot_script(const std::filesystem::path& exe);

}  // namespace crackseg::sweep
