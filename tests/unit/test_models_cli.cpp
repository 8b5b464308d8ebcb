// ctest-link: crackseg_base
// `crackseg models`: the table and --json list DESIGN.md's reference configurations with
// their exact parameter counts; one configuration can be asked for; bad keys exit with the
// bad-input code and name the nearest key.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/paths.hpp"

namespace {

struct CmdResult {
  int rc = -1;
  std::string out;  // stdout and stderr
};

CmdResult run_cli(const std::string& args) {
  const std::string cmd = crackseg::test::binary().string() + " " + args + " 2>&1";
  CmdResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST(ModelsCommand, JsonListsEveryTableRowWithItsCount) {
  const CmdResult r = run_cli("models --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto rows = nlohmann::json::parse(r.out);
  const std::pair<const char*, int64_t> expected[] = {
      {"patch_cnn", 96'233},       {"patch_cnn", 124'417},   {"unet", 1'944'049},      {"unet", 7'765'985},
      {"hourglass_unet", 23'535'553}, {"spiral_net", 41'638'685}, {"spiral_net", 2'612'957},
      {"spiral_net", 4'893'917},   {"flex_unet", 124'996'866}, {"flex_unet", 2'497'538}};
  ASSERT_EQ(rows.size(), std::size(expected));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i]["name"], expected[i].first);
    EXPECT_EQ(rows[i]["params"], expected[i].second) << rows[i]["summary"];
  }
  EXPECT_EQ(rows[0]["output"], nlohmann::json({1, 25}));
  EXPECT_EQ(rows[0]["output_kind"], "patch");
  EXPECT_EQ(rows[0]["input_rule"], "exactly 27");
  EXPECT_EQ(rows[5]["input_rule"], "128k-1 (255, 383, 511, ...)");
  EXPECT_EQ(rows[5]["output"], nlohmann::json({1, 1, 255, 255}));
  EXPECT_EQ(rows[8]["output_kind"], "softmax2");
  EXPECT_GT(rows[2]["forward_gmacs_per_sample"].get<double>(), 0.0);
}

TEST(ModelsCommand, TableShowsCountsRulesAndOutputs) {
  const CmdResult r = run_cli("models");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* s : {"param count", "124,996,866", "96,233", "2,612,957", "128k-1 (255, 383, 511, ...)",
                        "exactly 31", "multiples of 16", "softmax2 (1, 2, 256, 256)", "patch (1, 49)"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(ModelsCommand, OneConfigurationWithOverrides) {
  const CmdResult r = run_cli("models unet base=32 model.depth=4 dropout=0 --size 400 --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto rows = nlohmann::json::parse(r.out);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["params"], 7'765'985);
  EXPECT_EQ(rows[0]["config"]["dropout"], 0.0);
  EXPECT_EQ(rows[0]["output"], nlohmann::json({1, 1, 400, 400}));
  const CmdResult s = run_cli("models spiral_net depths=1-2 width=0.03 --size 7 --json");
  ASSERT_EQ(s.rc, 0) << s.out;
  EXPECT_EQ(nlohmann::json::parse(s.out)[0]["input_rule"], "4k-1 (7, 11, 15, ...)");
}

TEST(ModelsCommand, BadInputExitsWithCode2AndNamesTheNearest) {
  CmdResult r = run_cli("models unet bsae=3");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("did you mean 'model.base'"), std::string::npos) << r.out;
  r = run_cli("models spiral_net --size 256");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("nearest valid size to 256 is 255"), std::string::npos) << r.out;
  r = run_cli("models hourglas");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("'hourglass_unet'"), std::string::npos) << r.out;
}

// `crackseg bench` (a benchmark, so nothing here is timed): one tiny run prints one JSON object
// per case with the keys the issue fixes, and the FLOP count is the model's: 2 x 3 x forward
// multiply-adds of patch_cnn h=13 s=2 on 27x27 (4,410,224 MACs, see `crackseg models --json`).
TEST(BenchCommand, JsonObjectPerCaseWithTheFixedKeys) {
  const CmdResult r = run_cli("bench --case patch_cnn --warmup 1 --steps 1 --threads=1 --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["case"], "patch_cnn");
  for (const char* key : {"samples_per_s", "gflops", "pct_peak", "peak_rss_mb"}) {
    ASSERT_TRUE(j.contains(key)) << key;
    EXPECT_GT(j[key].get<double>(), 0.0) << key;
  }
  EXPECT_EQ(j["batch"], 128);
  EXPECT_EQ(j["params"], 96'233);
  EXPECT_NEAR(j["gflop_per_sample_step"].get<double>(), 6 * 4'410'224 / 1e9, 1e-12);
  EXPECT_NEAR(j["gflops"].get<double>(), j["gflop_per_sample_step"].get<double>() * j["samples_per_s"].get<double>(),
              1e-9 * j["gflops"].get<double>());
  EXPECT_TRUE(std::isfinite(j["loss_last"].get<double>()));
}

// The spread of the timed steps comes with the median: the fastest and slowest of them
// bracket it, and one timed step is all three.
TEST(BenchCommand, StepTimeSpreadBracketsTheMedian) {
  const CmdResult r = run_cli("bench --case patch_cnn --warmup 1 --steps 3 --threads=1 --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  const double lo = j["step_ms_min"].get<double>(), mid = j["step_ms"].get<double>(), hi = j["step_ms_max"].get<double>();
  EXPECT_GT(lo, 0.0);
  EXPECT_LE(lo, mid);
  EXPECT_LE(mid, hi);
  const CmdResult one = run_cli("bench --case patch_cnn --warmup 1 --steps 1 --threads=1 --json");
  ASSERT_EQ(one.rc, 0) << one.out;
  const auto k = nlohmann::json::parse(one.out.substr(one.out.find('{')));
  EXPECT_EQ(k["step_ms_min"].get<double>(), k["step_ms"].get<double>());
  EXPECT_EQ(k["step_ms_max"].get<double>(), k["step_ms"].get<double>());
}

// --paced (the step-by-step alternation of bench/peer/paired.py): a ready line after the untimed
// steps, one timed step per line of stdin with its time, then the usual object whose median
// is of those steps; stdin ending early is an error naming the step, and without --json an
// error too.
TEST(BenchCommand, PacedRunsOneTimedStepPerLineOfStdin) {
  crackseg::test::TempDir dir;
  std::ofstream(dir / "two") << "go\ngo\n";
  std::ofstream(dir / "one") << "go\n";
  const std::string run = "bench --case patch_cnn --warmup 1 --steps 2 --threads=1 --json --paced < ";
  const CmdResult r = run_cli(run + (dir / "two").string());
  ASSERT_EQ(r.rc, 0) << r.out;
  std::vector<nlohmann::json> lines;
  std::istringstream in(r.out);
  for (std::string l; std::getline(in, l);)
    if (!l.empty() && l[0] == '{') lines.push_back(nlohmann::json::parse(l));
  ASSERT_EQ(lines.size(), 4u) << r.out;
  EXPECT_EQ(lines[0]["paced"], "ready");
  EXPECT_EQ(lines[0]["case"], "patch_cnn");
  const double a = lines[1].at("ms").get<double>(), b = lines[2].at("ms").get<double>();
  EXPECT_EQ(lines[1]["paced"], "step");
  EXPECT_EQ(lines[2]["paced"], "step");
  EXPECT_EQ(lines[3]["steps"], 2);
  EXPECT_DOUBLE_EQ(lines[3]["step_ms_min"].get<double>(), std::min(a, b));
  EXPECT_DOUBLE_EQ(lines[3]["step_ms_max"].get<double>(), std::max(a, b));

  const CmdResult early = run_cli(run + (dir / "one").string());
  EXPECT_EQ(early.rc, 2) << early.out;
  EXPECT_NE(early.out.find("--paced: stdin closed before timed step 2 of 2 of case patch_cnn"), std::string::npos)
      << early.out;
  const CmdResult plain = run_cli("bench --case patch_cnn --steps 1 --paced");
  EXPECT_EQ(plain.rc, 2) << plain.out;
  EXPECT_NE(plain.out.find("--paced needs --json"), std::string::npos) << plain.out;
}

TEST(BenchCommand, UnknownCaseNamesTheNearest) {
  const CmdResult r = run_cli("bench --case spiral --json");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("did you mean 'spiral_net'"), std::string::npos) << r.out;
}
