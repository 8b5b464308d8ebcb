// Runs the built `crackseg` binary with arguments (through the shell: tests pass plain
// paths) and captures its exit code and combined stdout + stderr.
#pragma once
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "tests/support/paths.hpp"

namespace crackseg::test {

struct CmdResult {
  int code = -1;
  std::string output;  // stdout + stderr
};

// `env`: "NAME=value ..." set for this command only (empty: the test's own environment).
inline CmdResult run_cli_env(const std::string& env, const std::string& args) {
  const std::string cmd = (env.empty() ? "" : "env " + env + " ") + binary().string() + " " + args + " 2>&1";
  CmdResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline CmdResult run_cli(const std::string& args) { return run_cli_env("", args); }

}  // namespace crackseg::test
