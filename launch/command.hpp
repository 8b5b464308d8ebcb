// Subcommand registry. Each file in launch/commands/ registers itself with one static
// CommandRegistration; main() builds the CLI11 app from the registry, so a new subcommand
// touches only its own file.
//
//   namespace { struct Opts { std::string out; } opts; }
//   static crackseg::cli::CommandRegistration reg{{
//       .name = "synth", .help = "generate the built-in synthetic dataset",
//       .setup = [](CLI::App& app) { app.add_option("--out", opts.out)->required(); },
//       .run = []() -> int { ...; return 0; }}};
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace crackseg::cli {

// Process exit codes (documented in the README; the SLURM array script keys on them).
enum ExitCode : int {
  kOk = 0,
  kError = 1,          // runtime failure (library error, I/O)
  kBadInput = 2,       // bad command line, config, or input file
  kDiverged = 3,       // NaN/Inf loss or gradient; last good checkpoint kept
  kPreempted = 75,     // SIGUSR1/SIGTERM: checkpoint written, requeue me (EX_TEMPFAIL)
};

struct Command {
  std::string name;
  std::string help;
  std::function<void(CLI::App&)> setup;
  std::function<int()> run;
  bool needs_mpi = true;  // MPI_Init before run (train/eval/bench); cheap singleton otherwise
  // SIGUSR1/SIGTERM set the preemption flag (src/train/signals.hpp) from the first line of
  // main on (train); otherwise they keep their default action (end the process).
  bool stop_signals = false;
};

std::vector<Command>& registry();

struct CommandRegistration {
  explicit CommandRegistration(Command c) { registry().push_back(std::move(c)); }
};

}  // namespace crackseg::cli
