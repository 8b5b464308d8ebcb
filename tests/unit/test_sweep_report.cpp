// ctest-link: crackseg_slurm
// `sweep report` on a planted sweep folder (fake result.json and test_per_image.csv files):
// the compact default columns, mean / sample std / 95% t interval over seeds (expected values
// computed here from the planted numbers and tabulated t quantiles), ranking by the best
// epoch, --columns, the three formats, and the paired comparison (bootstrap CI, Wilcoxon).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numbers>
#include <numeric>
#include <sstream>

#include "slurm/plan.hpp"
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

// t(0.975, df): df 1 and 2 in closed form (tan(0.475 pi); sqrt(1.805 / 0.0975)), df 3 and 4
// solved with mpmath at 30 digits.
const double kT975[] = {0, std::tan(0.475 * std::numbers::pi), std::sqrt(1.805 / 0.0975), 3.1824463052837096, 2.7764451051977944};

double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }
double sd_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / double(v.size() - 1));
}

std::string fmt4(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}

// Planted sweep: loss.name in {bce, dice} x seeds {1, 2, 3}. dice has the better best-epoch
// val F1 but the worse last-epoch val F1, so ranking by the best epoch puts it first.
struct Planted {
  test::TempDir tmp;
  fs::path dir;
  // [config][seed]: config 0 = bce (task ids 0..2), 1 = dice (3..5)
  double best_val[2][3] = {{0.60, 0.62, 0.67}, {0.70, 0.74, 0.75}};
  double last_val[2][3] = {{0.59, 0.61, 0.66}, {0.40, 0.42, 0.41}};
  double test_f1[2][3] = {{0.55, 0.58, 0.60}, {0.65, 0.69, 0.70}};
  double time_s[2][3] = {{100, 110, 120}, {200, 190, 210}};
  int best_epoch[2][3] = {{3, 4, 5}, {2, 2, 3}};

  Planted() {
    write(tmp / "base.toml", "[train]\nepochs = 1\n");
    write(tmp / "sweep.toml",
          "base = \"base.toml\"\nout = \"out\"\nseeds = [1, 2, 3]\nmetric = \"val_f1\"\n[grid]\n\"loss.name\" = [\"bce\", \"dice\"]\n");
    const auto plan = plan_sweep(load_sweep(tmp / "sweep.toml"), "/bin/crackseg");
    dir = tmp / "out";
    for (const auto& t : plan.tasks) {
      const int c = t.overrides.at(0).find("dice") != std::string::npos ? 1 : 0;
      const int s = static_cast<int>(t.seed) - 1;
      std::ostringstream j;
      j.precision(17);
      j << "{\"parameters\": 1944049, \"epochs_done\": 10, \"timings\": {\"total_s\": " << time_s[c][s]
        << "}, \"best\": {\"metric\": \"val_f1\", \"epoch\": " << best_epoch[c][s] << "}, \"metrics\": {\"val_f1\": "
        << last_val[c][s] << ", \"best_val_f1\": " << best_val[c][s] << ", \"val_loss\": 0.1, \"test_f1\": " << test_f1[c][s] - 0.1
        << ", \"best_test_f1\": " << test_f1[c][s] << ", \"best_test_precision\": 0.5, \"best_test_recall\": 0.5"
        << ", \"best_test_iou\": 0.4, \"best_test_map\": 0.6}}";
      write(dir / t.dir / "result.json", j.str());
    }
  }
};

}  // namespace

TEST(StudentT, QuantilesMatchTables) {
  for (int df = 1; df <= 4; ++df) EXPECT_NEAR(student_t_quantile(0.975, df), kT975[df], 1e-9) << df;
  EXPECT_NEAR(student_t_quantile(0.975, 10), 2.2281388519862747, 1e-9);  // mpmath
  EXPECT_NEAR(student_t_quantile(0.975, 30), 2.0422724563012383, 1e-9);
  EXPECT_NEAR(student_t_quantile(0.5, 7), 0.0, 1e-9);
  EXPECT_NEAR(student_t_cdf(-kT975[2], 2), 0.025, 1e-12);
  const auto s = mean_std({1.0, 2.0, 4.0});
  EXPECT_NEAR(s.ci95, kT975[2] * sd_of({1.0, 2.0, 4.0}) / std::sqrt(3.0), 1e-9);
  EXPECT_TRUE(std::isnan(mean_std({1.0}).ci95));
}

TEST(SweepReport, DefaultColumnsStatisticsAndRankingByBestEpoch) {
  Planted p;
  const auto r = build_report(p.dir, ReportOptions{});
  EXPECT_EQ(r.sort_metric, "best_val_f1");  // not the last epoch's val_f1
  EXPECT_EQ(r.columns, (std::vector<std::string>{"params", "train_time_s", "epochs", "best_epoch", "best_val_f1",
                                                 "best_test_f1", "best_test_precision", "best_test_recall", "best_test_iou",
                                                 "best_test_map"}));
  ASSERT_EQ(r.configs.size(), 2u);
  EXPECT_EQ(r.configs[0].configuration, "loss.name=dice");
  for (int rank = 0; rank < 2; ++rank) {
    const int c = rank == 0 ? 1 : 0;
    const auto& row = r.configs[static_cast<size_t>(rank)];
    EXPECT_EQ(row.seeds.size(), 3u);
    const std::vector<double> bv(p.best_val[c], p.best_val[c] + 3), tf(p.test_f1[c], p.test_f1[c] + 3),
        ts(p.time_s[c], p.time_s[c] + 3);
    const auto& v = row.metrics.at("best_val_f1");
    EXPECT_EQ(v.n, 3);
    EXPECT_NEAR(v.mean, mean_of(bv), 1e-12);
    EXPECT_NEAR(v.std, sd_of(bv), 1e-12);
    EXPECT_NEAR(v.ci95, kT975[2] * sd_of(bv) / std::sqrt(3.0), 1e-9);
    EXPECT_NEAR(row.metrics.at("best_test_f1").mean, mean_of(tf), 1e-12);
    EXPECT_NEAR(row.metrics.at("best_test_f1").std, sd_of(tf), 1e-12);
    EXPECT_NEAR(row.metrics.at("train_time_s").mean, mean_of(ts), 1e-9);
    EXPECT_EQ(row.metrics.at("params").mean, 1944049.0);
  }
  EXPECT_NEAR(r.configs[0].metrics.at("best_epoch").mean, 7.0 / 3.0, 1e-12);

  // Markdown row of the best configuration, expected cells built from the planted numbers.
  const std::vector<double> bv(p.best_val[1], p.best_val[1] + 3);
  const double h = kT975[2] * sd_of(bv) / std::sqrt(3.0);
  const std::string cell = fmt4(mean_of(bv)) + " ± " + fmt4(sd_of(bv)) + " [" + fmt4(mean_of(bv) - h) + ", " +
                           fmt4(mean_of(bv) + h) + "]";
  const std::string md = format_table(r, TableFormat::md, "out");
  EXPECT_NE(md.find("| rank | loss.name | n | params | train_time_s | epochs | best_epoch | best_val_f1 | best_test_f1 |"),
            std::string::npos)
      << md;
  // A value every seed shares (params, epochs) is shown alone.
  EXPECT_NE(md.find("| 1 | dice | 3 | 1944049 | 200.0 ± 10.0 [175.2, 224.8] | 10.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| " + cell + " |"), std::string::npos) << cell << "\n" << md;

  // CSV: mean, std, CI bounds per column at full precision.
  const std::string csv = format_table(r, TableFormat::csv, "out");
  std::istringstream lines(csv);
  std::string head, row1;
  std::getline(lines, head);
  std::getline(lines, row1);
  EXPECT_EQ(head.rfind("rank,loss.name,n,params_mean,params_std,params_ci95_lo,params_ci95_hi,train_time_s_mean,", 0), 0u)
      << head;
  EXPECT_NE(csv.find("\n1,dice,3,1944049,0,1944049,1944049,"), std::string::npos) << csv;

  // LaTeX: escaped names, \pm.
  const std::string tex = format_table(r, TableFormat::tex, "out");  // the folder's name, as write_report
  EXPECT_NE(tex.find("best\\_val\\_f1"), std::string::npos) << tex;
  EXPECT_NE(tex.find("$" + fmt4(mean_of(bv)) + " \\pm " + fmt4(sd_of(bv))), std::string::npos) << tex;
  EXPECT_NE(tex.find("\\begin{tabular}"), std::string::npos);

  // The files are written, all three formats.
  std::ostringstream log;
  const auto files = write_report(p.dir, r, "", log);
  EXPECT_EQ(slurp(files.md), md);
  EXPECT_EQ(slurp(files.summary_csv), csv);
  EXPECT_EQ(slurp(files.tex), tex);
}

TEST(SweepReport, CsvSummaryNumbersAreMeanStdAndInterval) {
  Planted p;
  ReportOptions o;
  o.columns = {"best_test_f1"};
  const auto r = build_report(p.dir, o);
  const std::string csv = format_table(r, TableFormat::csv, "planted");
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "rank,loss.name,n,best_test_f1_mean,best_test_f1_std,best_test_f1_ci95_lo,best_test_f1_ci95_hi");
  std::getline(in, line);
  // 1,dice,3,mean,std,lo,hi
  ASSERT_EQ(line.rfind("1,dice,3,", 0), 0u) << line;
  const auto last = line.substr(std::string("1,dice,").size());
  std::vector<double> v;
  std::stringstream ls(last);
  for (std::string f; std::getline(ls, f, ',');) v.push_back(std::stod(f));
  ASSERT_EQ(v.size(), 5u) << line;
  const std::vector<double> tf(p.test_f1[1], p.test_f1[1] + 3);
  const double h = kT975[2] * sd_of(tf) / std::sqrt(3.0);
  EXPECT_EQ(v[0], 3);
  EXPECT_NEAR(v[1], mean_of(tf), 1e-12);
  EXPECT_NEAR(v[2], sd_of(tf), 1e-12);
  EXPECT_NEAR(v[3], mean_of(tf) - h, 1e-9);
  EXPECT_NEAR(v[4], mean_of(tf) + h, 1e-9);
}

TEST(SweepReport, ColumnsOptionAndExplicitMetric) {
  Planted p;
  ReportOptions o;
  o.columns = {"val_f1", "best_epoch"};
  o.metric = "val_f1";  // an explicit metric is taken as named: the last epoch
  const auto r = build_report(p.dir, o);
  EXPECT_EQ(r.columns, (std::vector<std::string>{"val_f1", "best_epoch"}));
  EXPECT_EQ(r.sort_metric, "val_f1");
  EXPECT_EQ(r.configs[0].configuration, "loss.name=bce");
  o.columns = {"no_such_column"};
  EXPECT_THROW((void)build_report(p.dir, o), InputError);
  EXPECT_THROW((void)parse_table_format("html"), InputError);
}

TEST(SweepReport, PairedComparisonFromPerImageFiles) {
  Planted p;
  // Per image, dice - bce = d (the same for every seed); bce's own F1 varies by seed.
  const std::vector<double> d = {0.1, 0.2, -0.05, 0.3, 0.15};
  const auto plan = plan_sweep(load_sweep(p.tmp / "sweep.toml"), "/bin/crackseg");
  for (const auto& t : plan.tasks) {
    const bool dice = t.overrides.at(0).find("dice") != std::string::npos;
    std::string csv = "name,source,P,R,F1,IoU,Dice,AP,crack_pixels\n";
    for (size_t i = 0; i < d.size(); ++i) {
      const double f1 = 0.3 + 0.01 * double(t.seed) + 0.02 * double(i) + (dice ? d[i] : 0.0);
      csv += "img" + std::to_string(i) + ".png,planted,0.5,0.5," + std::to_string(f1) + ",0.4,0.5,0.6,100\n";
    }
    write(p.dir / t.dir / "test_per_image.csv", csv);
  }
  const auto r = build_report(p.dir, ReportOptions{});
  ASSERT_EQ(r.paired.size(), 1u);
  const auto& t = r.paired[0];
  EXPECT_EQ(t.note, "");
  EXPECT_EQ(t.images, 5);
  EXPECT_EQ(t.seeds, 3);
  EXPECT_NEAR(t.mean_diff, mean_of(d), 1e-6);
  EXPECT_LT(t.ci_lo, t.mean_diff);
  EXPECT_GT(t.ci_hi, t.mean_diff);
  EXPECT_GE(t.ci_lo, -0.05 - 1e-6);
  EXPECT_LE(t.ci_hi, 0.3 + 1e-6);
  // Signed ranks of |d| = 0.1 0.2 0.05 0.3 0.15 -> 2 4 1 5 3; W+ = 2+4+5+3 = 14, n = 5.
  const double z = (14 - 5.0 * 6 / 4) / std::sqrt(5.0 * 6 * 11 / 24);
  EXPECT_NEAR(t.wilcoxon_p, std::erfc(z / std::sqrt(2.0)), 1e-6);
  const std::string md = format_table(r, TableFormat::md, "planted");
  EXPECT_NE(md.find("## Paired comparison on the test images"), std::string::npos) << md;
  EXPECT_NE(md.find("| loss.name=dice | loss.name=bce | 5 | 3 | " + fmt4(mean_of(d)) + " | ["), std::string::npos)
      << md;
  // Same seed, same interval.
  const auto again = build_report(p.dir, ReportOptions{});
  EXPECT_EQ(again.paired[0].ci_lo, t.ci_lo);
  EXPECT_EQ(again.paired[0].ci_hi, t.ci_hi);

  // The best checkpoint's scores (best_test_per_image.csv) are preferred where present: there
  // dice leads bce by 0.5 on every image.
  for (const auto& task : plan.tasks) {
    const bool dice = task.overrides.at(0).find("dice") != std::string::npos;
    std::string csv = "dataset,name,source,precision,recall,f1\n";
    for (size_t i = 0; i < d.size(); ++i)
      csv += "x.h5,img" + std::to_string(i) + ".png,planted,0.5,0.5," + std::to_string(dice ? 0.9 : 0.4) + "\n";
    write(p.dir / task.dir / "best_test_per_image.csv", csv);
  }
  const auto best = build_report(p.dir, ReportOptions{});
  EXPECT_NEAR(best.paired[0].mean_diff, 0.5, 1e-9);
  EXPECT_NEAR(best.paired[0].ci_lo, 0.5, 1e-9);
  EXPECT_NEAR(best.paired[0].ci_hi, 0.5, 1e-9);
}

TEST(PairedStatistics, ConstantDifferenceAndTies) {
  PairedTest t;
  paired_statistics({0.25, 0.25, 0.25, 0.25}, t);
  EXPECT_DOUBLE_EQ(t.mean_diff, 0.25);
  EXPECT_DOUBLE_EQ(t.ci_lo, 0.25);
  EXPECT_DOUBLE_EQ(t.ci_hi, 0.25);
  EXPECT_EQ(wilcoxon_signed_rank_p({0, 0, 0}), 1.0);
  // Ties: |d| = 1 1 2 -> ranks 1.5 1.5 3; W+ = 1.5 + 3 = 4.5; tie correction (2^3 - 2) / 48.
  const double var = 3.0 * 4 * 7 / 24 - 6.0 / 48;
  const double z = (4.5 - 3.0) / std::sqrt(var);
  EXPECT_NEAR(wilcoxon_signed_rank_p({1, -1, 2}), std::erfc(z / std::sqrt(2.0)), 1e-12);
}

TEST(SweepReport, MissingPerImageFilesAreNamedNotInvented) {
  Planted p;
  const auto r = build_report(p.dir, ReportOptions{});
  ASSERT_EQ(r.paired.size(), 1u);
  EXPECT_NE(r.paired[0].note.find("test_per_image.csv"), std::string::npos);
  const std::string md = format_table(r, TableFormat::md, "planted");
  EXPECT_NE(md.find("no seed with best_test_per_image.csv or test_per_image.csv for both"), std::string::npos) << md;
}
