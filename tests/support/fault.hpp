// Helpers for the fault tests (tests/integration/test_fault_*.cpp): run the built crackseg
// (directly or under mpiexec) with a wall-clock limit, a tiny synthetic dataset and run
// config, and byte comparison of files.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/paths.hpp"

namespace crackseg::test {

struct Proc {
  pid_t pid = -1;
  std::filesystem::path log;  // stdout + stderr
};

struct ProcResult {
  int code = -1;    // exit status, or -1 when killed by a signal (see signal)
  int signal = 0;   // the signal that ended it
  bool timed_out = false;
  double seconds = 0;
  std::string output;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts argv (argv[0] is looked up on PATH) in its own process group, output to `log`.
inline Proc spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  Proc p;
  p.log = log;
  p.pid = fork();
  if (p.pid == 0) {
    setpgid(0, 0);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    // The test runner may block or ignore signals; the child starts clean.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    // The test itself is an MPI singleton: its MPI environment must not leak into a child
    // (mpiexec would take it for its own job's).
    std::vector<std::string> mpi_vars;
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      for (const char* prefix : {"OMPI_", "PMIX_", "ORTE_", "OPAL_", "PMI_", "HYDRA_"})
        if (kv.rfind(prefix, 0) == 0) mpi_vars.push_back(kv.substr(0, kv.find('=')));
    }
    for (const auto& v : mpi_vars) unsetenv(v.c_str());
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  return p;
}

// Waits for `p` up to `limit_s`; past it the whole process group is killed (timed_out).
inline ProcResult wait_for(const Proc& p, double limit_s) {
  const auto t0 = std::chrono::steady_clock::now();
  ProcResult r;
  int status = 0;
  while (true) {
    const pid_t w = waitpid(p.pid, &status, WNOHANG);
    if (w == p.pid) break;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.seconds > limit_s) {
      r.timed_out = true;
      kill(-p.pid, SIGKILL);
      waitpid(p.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (WIFEXITED(status)) r.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.output = slurp(p.log);
  return r;
}

inline ProcResult run_for(const std::vector<std::string>& argv, const std::filesystem::path& log, double limit_s) {
  return wait_for(spawn(argv, log), limit_s);
}

// `crackseg ARGS...`
inline std::vector<std::string> crackseg(std::vector<std::string> args) {
  args.insert(args.begin(), binary().string());
  return args;
}

// `mpiexec -np N crackseg ARGS...`
inline std::vector<std::string> mpi_crackseg(int ranks, std::vector<std::string> args) {
  std::vector<std::string> a{"mpiexec", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                             "-x", "OMP_NUM_THREADS=1", "-np", std::to_string(ranks), binary().string()};
  a.insert(a.end(), args.begin(), args.end());
  return a;
}

// A tiny synthetic dataset (48 images of 32x32) written by `crackseg synth`.
inline std::filesystem::path tiny_dataset(const std::filesystem::path& dir, int count = 48, int size = 32) {
  const auto out = dir / "synth.h5";
  const auto r = run_for(crackseg({"synth", "--out", out.string(), "--count", std::to_string(count), "--size",
                                   std::to_string(size), "--workers", "1"}),
                         dir / "synth.log", 120);
  if (r.code != 0) throw std::runtime_error("crackseg synth failed: " + r.output);
  return out;
}

// A U-Net base=4 depth=2 run on `data`, one thread, no curves; `extra` is appended TOML.
inline std::filesystem::path tiny_config(const std::filesystem::path& dir, const std::filesystem::path& data,
                                         const std::filesystem::path& out, const std::string& extra = "") {
  const auto path = dir / "run.toml";
  std::ofstream(path) << "[data]\npath = \"" << data.string() << "\"\ncrop = 0\naugment = false\n"
                      << "[model]\nname = \"unet\"\nbase = 4\ndepth = 2\n"
                      << "[optim]\nname = \"adam\"\nlr = 1e-3\n"
                      << "[train]\nepochs = 1\nbatch = 8\nmicro_batch = 4\nseed = 5\nthreads = 1\nout = \""
                      << out.string() << "\"\n"
                      << extra;
  return path;
}

// Names of the files in `dir` (not recursive), sorted.
inline std::vector<std::string> files_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace crackseg::test
