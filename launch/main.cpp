// The `crackseg` command: one binary, subcommands registered from launch/commands/.
// Errors become exit codes here and nowhere else.
#include <mpi.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <exception>
#include <memory>

#include "launch/command.hpp"
#ifdef CRACKSEG_HAVE_CUDA
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/train_kit.hpp"
#endif
#include "src/core/error.hpp"
#include "src/core/runtime.hpp"
#include "src/train/signals.hpp"

namespace crackseg::cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace crackseg::cli

// The earliest point a process can take charge of a signal: .preinit_array entries run after
// the dynamic loader, before every constructor (shared libraries' included), which under load
// can take a noticeable fraction of a second. SIGUSR1/SIGTERM stay blocked (pending) until
// main() has decided how the command handles them (see block_stop_signals).
extern "C" {
static void crackseg_block_stop_signals_early(int, char**, char**) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
}
__attribute__((section(".preinit_array"), used)) static void (*crackseg_preinit)(int, char**, char**) =
    crackseg_block_stop_signals_early;
}

namespace {

// An error that escaped a subcommand: printed by the failing rank itself (its peers may never
// learn why), then, in a job of several ranks, MPI_Abort ends every rank within seconds
// instead of leaving the healthy ones to wait in a collective until dist.timeout_s, and
// instead of running MPI_Finalize (which a lone failing rank cannot complete) while it exits.
int report_error(const char* command, const char* what, int code) {
  int initialized = 0, finalized = 0, size = 1, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool live = initialized && !finalized;
  if (live) {
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  }
  if (size > 1) {
    // Printed once: a config or input error is raised by every rank alike, so the other ranks
    // give rank 0 a moment to print it and abort the job; an error of one rank alone is
    // still printed by that rank, a moment later.
    if (rank != 0) std::this_thread::sleep_for(std::chrono::seconds(2));
    std::fprintf(stderr, "crackseg %s: error on rank %d of %d: %s\ncrackseg %s: aborting all %d ranks (exit %d)\n",
                 command, rank, size, what, command, size, code);
    std::fflush(stderr);
    std::fflush(stdout);
    MPI_Abort(MPI_COMM_WORLD, code);
  }
  std::fprintf(stderr, "crackseg %s: error: %s\n", command, what);
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace crackseg;
  // Before anything starts a thread (MPI, OpenMP, Kokkos inherit this mask): a SIGUSR1/SIGTERM
  // during start-up stays pending until the command has said how it wants it handled.
  block_stop_signals();
#ifdef CRACKSEG_HAVE_CUDA
  cuda::register_cuda_backend();   // make_backend("cuda") (crackseg_cuda links after crackseg_nn)
  cuda::register_cuda_training();  // train.device = "cuda": device loss, optimizer, NCCL sync
#endif
  CLI::App app{"crackseg: data-parallel crack segmentation training on HPC clusters"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("crackseg ") + CRACKSEG_VERSION_STRING);
  auto& reg = cli::registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, const cli::Command*>> subs;
  for (const auto& c : reg) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    c.setup(*sub);
    subs.emplace_back(sub, &c);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    unblock_stop_signals();
    return app.exit(e) == 0 ? cli::kOk : cli::kBadInput;
  }
  const cli::Command* chosen = nullptr;
  for (auto& [sub, c] : subs)
    if (sub->parsed()) chosen = c;
  // A pending request now sets the flag (train exits 75 before training) or ends the process.
  if (chosen->stop_signals) install_stop_signal_handlers();
  unblock_stop_signals();
  // Outside the try: the runtime (MPI) must outlive the error report, which may MPI_Abort.
  std::unique_ptr<Runtime> runtime;
  try {
    runtime = std::make_unique<Runtime>(&argc, &argv, chosen->needs_mpi);
    return chosen->run();
  } catch (const InputError& e) {
    return report_error(chosen->name.c_str(), e.what(), cli::kBadInput);
  } catch (const std::exception& e) {
    return report_error(chosen->name.c_str(), e.what(), cli::kError);
  }
}
