// `crackseg train CONFIG.toml [key=value ...] [--task MANIFEST:ID] [--no-resume]`:
// data-parallel training under mpirun/srun (one process = one rank).
#include <cstdio>

#include "launch/command.hpp"
#include "src/config/config.hpp"
#include "src/config/task.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/signals.hpp"
#include "src/train/run_checks.hpp"
#include "src/train/trainer.hpp"

namespace {

struct Opts {
  std::string config;
  std::vector<std::string> overrides;
  std::string task;
  bool no_resume = false;
  bool quiet = false;
} opts;

int run() {
  using namespace crackseg;
  std::vector<std::string> all;
  if (!opts.task.empty()) {
    const auto t = config::task_overrides(opts.task);
    all = t.overrides;
  }
  all.insert(all.end(), opts.overrides.begin(), opts.overrides.end());
  const config::ResolvedConfig cfg = config::load_run_config(opts.config, all);
  // Loss vs model, input size, data.path, empty evaluation splits, eval.threshold: named
  // before any rank opens, stages or trains anything.
  train::check_run_config(cfg.values);
  dist::MpiCommunicator comm(MPI_COMM_WORLD, cfg.values.at("dist").at("timeout_s").get<double>());
  install_stop_signal_handlers();
  train::TrainOptions to;
  to.resume = !opts.no_resume;
  to.quiet = opts.quiet;
  try {
    const auto outcome = train::run_training(cfg, comm, to);
    if (outcome.status == train::TrainStatus::preempted) {
      if (comm.rank() == 0)
        std::fprintf(stderr, "crackseg train: stop signal %d received: checkpoint written to %s/checkpoint.h5; "
                             "exiting %d so the job can be requeued\n",
                     stop_signal(), cfg.values["train"]["out"].get<std::string>().c_str(), cli::kPreempted);
      return cli::kPreempted;
    }
  } catch (const train::DivergedError& e) {
    std::fprintf(stderr, "crackseg train: %s\n", e.what());
    return cli::kDiverged;
  } catch (const dist::CollectiveTimeout& e) {
    std::fprintf(stderr, "crackseg train: %s; aborting the job\n", e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, cli::kError);
  }
  return cli::kOk;
}

crackseg::cli::CommandRegistration reg{{
    .name = "train",
    .help = "train a model from a TOML config (data-parallel under mpirun/srun)",
    .setup =
        [](CLI::App& app) {
          app.add_option("config", opts.config, "run config (TOML)")->required()->check(CLI::ExistingFile);
          app.add_option("overrides", opts.overrides, "key=value overrides, e.g. optim.lr=1e-4 model.base=32");
          app.add_option("--task", opts.task, "sweep task MANIFEST:ID (its overrides come before the command line's)");
          app.add_flag("--no-resume", opts.no_resume, "start fresh even if <out>/checkpoint.h5 exists");
          app.add_flag("--quiet", opts.quiet, "no progress lines");
        },
    .run = run,
}};

}  // namespace
