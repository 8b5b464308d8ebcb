// ctest-labels: bench
// ctest-link: crackseg_base
// ctest-timeout: 240
// The PyTorch peer of `crackseg bench` (bench/peer/, issue 15) builds the same three networks:
// its parameter counts and forward multiply-adds equal `crackseg models --json`'s, and a peer
// one channel off is caught. No timing. Skipped unless the benchmark venv with torch exists
// ($CRACKSEG_PEER_VENV, default build/peer-venv, made by scripts/bench-peer.sh).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/support/cli.hpp"

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

}  // namespace
