// ctest-labels: slurm
// ctest-link: crackseg_slurm
// ctest-timeout: 300
// The published studies (experiments/results/<study>/results.md) against the machinery that
// made them: study 1's sweep file (experiments/patch_cnn_train_size.toml, --reduced) runs end
// to end through a one-node SLURM cluster on a tiny synthetic set (same grid, one seed, three
// steps), `crackseg sweep report` writes its table, and the committed table must have the
// structure of the one just produced: the title, the "N of M tasks" line, a first table whose
// header is rank, the same swept axes in the same order, n, then metric columns (which and
// how many may change: only a test F1 column (test_f1 or best_test_f1) is required), a separator of as many cells,
// and one row per configuration with as many cells, ranks 1..K, n a positive count and every
// metric cell a number, "mean ± std", "mean ± std [lo, hi]" or "-". Every other committed
// results.md is held to the same structure.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "slurm/process.hpp"
#include "test_slurm_cluster.hpp"

using namespace crackseg;
using namespace crackseg::sweep;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// Replaces the one line that starts with `prefix` (a key of the sweep file) by `line`.
std::string replace_line(const std::string& text, const std::string& prefix, const std::string& line) {
  std::istringstream in(text);
  std::string out, l;
  int hits = 0;
  while (std::getline(in, l)) {
    if (l.rfind(prefix, 0) == 0) {
      l = line;
      ++hits;
    }
    out += l + "\n";
  }
  EXPECT_EQ(hits, 1) << "expected one line starting with '" << prefix << "' in the study's sweep file";
  return out;
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> c;
  std::string cur;
  for (size_t i = 1; i < row.size(); ++i) {  // row starts with '|'
    if (row[i] == '|') {
      const auto b = cur.find_first_not_of(' '), e = cur.find_last_not_of(' ');
      c.push_back(b == std::string::npos ? "" : cur.substr(b, e - b + 1));
      cur.clear();
    } else {
      cur += row[i];
    }
  }
  return c;
}

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  int64_t configurations = -1;
};

// Parses a results.md and checks its structure; `axes` are the swept-axis columns expected
// after `rank` (empty: a single `configuration` column).
Table check_structure(const fs::path& md_path, const std::vector<std::string>* axes) {
  SCOPED_TRACE(md_path.string());
  Table t;
  const std::string md = slurp(md_path);
  EXPECT_EQ(md.rfind("# Sweep results: ", 0), 0u) << md;
  std::smatch m;
  const std::regex summary(R"((\d+) of (\d+) tasks have results; (\d+) configurations\.)");
  EXPECT_TRUE(std::regex_search(md, m, summary)) << md;
  if (!m.empty()) t.configurations = std::stoll(m[3]);
  std::istringstream in(md);
  std::vector<std::string> lines;  // the first table: the first run of lines starting with '|'
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l[0] == '|') lines.push_back(l);
    else if (!lines.empty()) break;
  }
  EXPECT_GE(lines.size(), 2u) << md;
  if (lines.size() < 2) return t;
  t.header = cells(lines[0]);
  const auto sep = cells(lines[1]);
  EXPECT_EQ(sep.size(), t.header.size()) << lines[1];
  for (const auto& s : sep) EXPECT_EQ(s, "---") << lines[1];
  EXPECT_FALSE(t.header.empty());
  if (t.header.empty()) return t;
  EXPECT_EQ(t.header[0], "rank");
  size_t col = 1;
  if (axes) {
    for (const auto& a : *axes) {
      EXPECT_LT(col, t.header.size());
      if (col < t.header.size()) {
        EXPECT_EQ(t.header[col], a) << lines[0];
      }
      ++col;
    }
  } else {
    EXPECT_TRUE(t.header.size() > 1 && t.header[1] != "n") << lines[0];
    while (col < t.header.size() && t.header[col] != "n") ++col;
  }
  EXPECT_LT(col, t.header.size());
  if (col >= t.header.size()) return t;
  EXPECT_EQ(t.header[col], "n") << lines[0];
  EXPECT_GT(t.header.size(), col + 1) << "no metric columns: " << lines[0];
  const std::string num = R"((-?(\d+(\.\d+)?|nan|inf)))";
  const std::regex cell(num + "( ± " + num + "( \\[" + num + ", " + num + "\\])?)?|-");
  for (size_t r = 2; r < lines.size(); ++r) {
    auto c = cells(lines[r]);
    EXPECT_EQ(c.size(), t.header.size()) << lines[r];
    if (c.size() != t.header.size()) continue;
    EXPECT_EQ(c[0], std::to_string(r - 1)) << lines[r];
    EXPECT_TRUE(std::regex_match(c[col], std::regex(R"([1-9]\d*)"))) << lines[r];
    for (size_t k = col + 1; k < c.size(); ++k) EXPECT_TRUE(std::regex_match(c[k], cell)) << t.header[k] << ": " << c[k];
    t.rows.push_back(std::move(c));
  }
  EXPECT_EQ(static_cast<int64_t>(t.rows.size()), t.configurations);
  return t;
}

TEST(SlurmStudies, PatchCnnStudyRunsReducedAndTheCommittedTableHasTheReportFormat) {
  const std::string bin = test::binary().string();
  if (run_process({bin, "train", "--help"}).exit_code != 0) GTEST_SKIP() << "`crackseg train` is not in this build";
  test::TempDir tmp;
  chmod(tmp.path().c_str(), 0755);
  auto r = run_process({bin, "synth", "--out", (tmp / "synth.h5").string(), "--count", "30", "--size", "32", "--seed", "5"});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The study's own files, with the data swapped for the synthetic set and a shorter run.
  const fs::path exp = test::source_dir() / "experiments";
  std::string sweep = slurp(exp / "patch_cnn_train_size.toml");
  sweep = replace_line(sweep, "\"data.path\" =", "\"data.path\" = \"" + (tmp / "synth.h5").string() + "\"");
  sweep = replace_line(sweep, "\"train.steps\" =", "\"train.steps\" = 3");
  sweep = replace_line(sweep, "seeds = [126, 127, 128]", "seeds = [126]");
  write(tmp / "exp" / "patch_cnn_train_size.toml", sweep);
  fs::copy_file(exp / "patch_cnn_cfd.toml", tmp / "exp" / "patch_cnn_cfd.toml");

  test::LocalCluster cluster;
  r = run_process({bin, "sweep", "submit", (tmp / "exp" / "patch_cnn_train_size.toml").string(), "--reduced"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const fs::path dir = tmp / "runs" / "sweeps" / "patch_cnn_train_size_reduced";
  r = run_process({bin, "sweep", "status", "--wait", dir.string()});
  ASSERT_NE(r.out.find("8 tasks: 8 done"), std::string::npos) << r.out << r.err;
  r = run_process({bin, "sweep", "report", "--no-plots", dir.string()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;

  const std::vector<std::string> axes = {"data.max_train", "model.padding"};
  const Table fresh = check_structure(dir / "results.md", &axes);
  EXPECT_EQ(fresh.configurations, 8);
  // The test F1 column: test_f1 (final model) or best_test_f1 (best checkpoint), by binary.
  auto has = [](const Table& t, const std::string& c) {
    return std::any_of(t.header.begin(), t.header.end(), [&](const std::string& h) {
      return h == c || (h.size() > c.size() && h.compare(h.size() - c.size() - 1, std::string::npos, "_" + c) == 0);
    });
  };
  std::string fresh_header;
  for (const auto& h : fresh.header) fresh_header += h + " ";
  EXPECT_TRUE(has(fresh, "test_f1")) << "the report no longer shows test_f1: " << fresh_header;

  // The committed table: the same axes and n at the same places, test_f1 among its columns.
  const fs::path committed = exp / "results" / "patch_cnn_train_size" / "results.md";
  ASSERT_TRUE(fs::exists(committed)) << committed;
  const Table pub = check_structure(committed, &axes);
  EXPECT_GE(pub.configurations, 1);  // a study may span sessions: some configurations may be missing
  EXPECT_LE(pub.configurations, 8);
  EXPECT_TRUE(has(pub, "test_f1"));
}

TEST(SlurmStudies, EveryCommittedResultsTableHasTheReportStructure) {
  const fs::path results = test::source_dir() / "experiments" / "results";
  int checked = 0;
  if (fs::exists(results))
    for (const auto& e : fs::recursive_directory_iterator(results))
      if (e.path().filename() == "results.md") {
        (void)check_structure(e.path(), nullptr);
        ++checked;
      }
  EXPECT_GE(checked, 1);
}

}  // namespace
