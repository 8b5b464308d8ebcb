// ctest-labels: bench
// ctest-link: crackseg_base
// ctest-timeout: 240
// The PyTorch peer of `crackseg bench` (bench/peer/, issue 15) builds the same three networks:
// its parameter counts and forward multiply-adds equal `crackseg models --json`'s, and a peer
// one channel off is caught. No timing. Skipped unless the benchmark venv with torch exists
// ($CRACKSEG_PEER_VENV, default build/peer-venv, made by scripts/bench-peer.sh). The table
// (no torch needed, the system python3) is checked on results with known numbers: medians,
// the ratio to the stronger mode, and the per-repetition range that shows a noisy host; the
// paired (step-by-step) table: the median of the per-round ratios, not the ratio of medians.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/cli.hpp"
#include "tests/support/paths.hpp"

namespace {

using crackseg::test::binary;
using crackseg::test::source_dir;

std::filesystem::path venv_python() {
  const char* env = std::getenv("CRACKSEG_PEER_VENV");
  const std::filesystem::path venv = env ? std::filesystem::path(env) : source_dir() / "build" / "peer-venv";
  return venv / "bin" / "python";
}

crackseg::test::CmdResult run_shell(const std::string& cmd) {
  crackseg::test::CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool peer_available() {
  const auto py = venv_python();
  return std::filesystem::exists(py) && run_shell(py.string() + " -c 'import torch'").code == 0;
}

std::string check_cmd(const std::string& extra) {
  return venv_python().string() + " " + (source_dir() / "bench" / "peer" / "peer_bench.py").string() +
         " check --crackseg " + binary().string() + " " + extra;
}

TEST(BenchPeer, ParameterCountsAndMacsMatchCrackseg) {
  if (!peer_available()) GTEST_SKIP() << "no benchmark venv with torch at " << venv_python();
  const auto r = run_shell(check_cmd(""));
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* name : {"patch_cnn", "unet", "spiral_net"}) EXPECT_NE(r.output.find(name), std::string::npos);
  EXPECT_NE(r.output.find("96,233"), std::string::npos) << r.output;     // patch_cnn h=13 s=2
  EXPECT_NE(r.output.find("1,944,049"), std::string::npos) << r.output;  // unet base=16 depth=4
  EXPECT_NE(r.output.find("2,612,957"), std::string::npos) << r.output;  // spiral_net width=0.25
  EXPECT_EQ(r.output.find("MISMATCH"), std::string::npos) << r.output;
}

TEST(BenchPeer, APeerOneChannelOffFailsTheCheck) {
  if (!peer_available()) GTEST_SKIP() << "no benchmark venv with torch at " << venv_python();
  const auto r = run_shell(check_cmd("--perturb 1"));
  EXPECT_EQ(r.code, 1) << r.output;
  int mismatches = 0;  // one line per model, each must be caught
  for (auto at = r.output.find("MISMATCH"); at != std::string::npos; at = r.output.find("MISMATCH", at + 1)) ++mismatches;
  EXPECT_EQ(mismatches, 3) << r.output;
}

// Two repetitions of Spiral-Net: crackseg 20 then 30 img/s; eager 10, 10; compile 8, 20. Medians
// 25 against the stronger mode's 14 (compile) = 1.79x; within each repetition 20/10 = 2.00x
// and 30/20 = 1.50x; bf16 40, 42 against the strongest fp32 peer of each repetition: 4.00x and
// 2.10x.
TEST(BenchPeer, TableGivesMediansRatioAndPerRepetitionRange) {
  if (run_shell("python3 -c 'import json, statistics'").code != 0) GTEST_SKIP() << "no python3";
  crackseg::test::TempDir dir;
  const auto results = dir.path() / "results.jsonl";
  {
    std::ofstream f(results);
    const auto ours = [&](int rep, double rate, const char* precision) {
      f << R"({"side": "crackseg", "case": "spiral_net", "rep": )" << rep << R"(, "samples_per_s": )" << rate
        << R"(, "precision": ")" << precision
        << R"(", "params": 2612957, "batch": 4, "cpu_s_per_step": 0.3, "gflop_per_sample_step": 3.9, )"
        << R"("sgemm_peak_gflops": 200.0, "peak_rss_mb": 400.0})" << "\n";
    };
    const auto peer = [&](int rep, double rate, const char* mode) {
      f << R"({"side": "peer", "case": "spiral_net", "rep": )" << rep << R"(, "samples_per_s": )" << rate
        << R"(, "mode": ")" << mode << R"(", "params": 2612957, "batch": 4, "cpu_s_per_step": 0.6, )"
        << R"("peak_rss_mb": 1000.0, "base_rss_mb": 500.0, "first_step_s": 1.0})" << "\n";
    };
    ours(1, 20, "fp32"), ours(1, 40, "bf16"), peer(1, 10, "eager"), peer(1, 8, "compile");
    peer(2, 10, "eager"), peer(2, 20, "compile"), ours(2, 30, "fp32"), ours(2, 42, "bf16");
  }
  const auto r =
      run_shell("python3 " + (source_dir() / "bench" / "peer" / "peer_bench.py").string() + " table " + results.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("| spiral_net width 0.25 @255, batch 4 | 25.00 img/s | 10.00 | 14.00 | **1.79x** | 1.50-2.00x |"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| **2.93x** | 2.10-4.00x |"), std::string::npos) << r.output;  // bf16 41 / 14
}

// bench/peer/paired.py's table: each round's peer step over crackseg's step of the same round,
// median and quartiles of those. The numbers are chosen so that the ratio of the medians (1.58x)
// and the ratio of the sorted lists (median 1.64x) differ from the per-round median (1.90x).
TEST(BenchPeer, PairedTableGivesTheMedianOfPerStepRatios) {
  if (run_shell("python3 -c 'import json, statistics'").code != 0) GTEST_SKIP() << "no python3";
  crackseg::test::TempDir dir;
  const auto results = dir.path() / "paired.jsonl";
  {
    std::ofstream f(results);
    const auto side = [&](const char* who, const char* key, const char* value, const char* steps, double rss) {
      f << R"({"side": ")" << who << R"(", "case": "spiral_net", ")" << key << R"(": ")" << value
        << R"(", "batch": 4, "paired": true, "peak_rss_mb": )" << rss << R"(, "step_ms_list": )" << steps << "}\n";
    };
    side("crackseg", "precision", "fp32", "[100, 200, 120, 210, 110]", 400);
    side("crackseg", "precision", "bf16", "[50, 100, 60, 105, 55]", 350);
    side("peer", "mode", "eager", "[190, 420, 180, 420, 160]", 1000);
    side("peer", "mode", "compile", "[300, 500, 300, 500, 300]", 1100);
    side("peer", "mode", "bf16", "[100, 150, 90, 200, 100]", 900);
  }
  const auto r = run_shell("python3 " + (source_dir() / "bench" / "peer" / "peer_bench.py").string() +
                           " paired-table " + results.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("| spiral_net | 33.33 img/s | 21.05 / 13.33 | eager | **1.90x** | 1.48-2.05x | 1.58x | 5 | "
                          "400 / 1,000 |"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("| spiral_net | 66.67 | 40.00 | **3.80x** (2.95-4.10x) | **1.82x** (1.50-1.95x) |"),
            std::string::npos)
      << r.output;
}

}  // namespace
