// `crackseg train CONFIG.toml [key=value ...] [--task MANIFEST:ID] [--no-resume]`:
// data-parallel training under mpirun/srun (one process = one rank).
#include <cstdio>
#include <optional>
#include <filesystem>
#include <fstream>
#include <memory>

#include "io/stage/node_stage.hpp"
#include "io/dataset/dataset.hpp"
#include "launch/command.hpp"
#include "src/config/config.hpp"
#include "src/config/task.hpp"
#include "src/core/error.hpp"
#include "src/core/file_lock.hpp"
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

// "" unless `out` holds a finished run of this very config: result.json with a final status
// and the same config hash. Then it describes it ("completed, config hash 1a2b...").
std::string finished_run(const std::filesystem::path& out, const std::string& config_hash) {
  std::ifstream in(out / "result.json");
  if (!in) return "";
  try {
    const auto r = nlohmann::json::parse(in);
    const std::string status = r.value("status", std::string());
    if (r.value("config_hash", std::string()) != config_hash || (status != "completed" && status != "early_stopped"))
      return "";
    return status + ", config hash " + config_hash;
  } catch (const nlohmann::json::exception&) {
    return "";  // unreadable: not a finished run; training rewrites it
  }
}

// Every split the config names exists in the dataset (a typo in data.val_split would
// otherwise silently disable validation and best.h5). Opening also checks the contents.
void check_splits(const nlohmann::json& data) {
  using namespace crackseg;
  const std::string path = data.at("path").get<std::string>();
  const io::DatasetFile ds(path);
  for (const char* key : {"train_split", "val_split", "test_split"}) {
    const std::string name = data.at(key).get<std::string>();
    if (name.empty() && std::string_view(key) != "train_split") continue;  // "": no validation / test
    if (std::string_view(key) == "test_split" && !data.value("test_path", std::string()).empty())
      continue;  // read from data.test_path, checked by the trainer
    if (ds.has_split(name)) continue;
    std::string have;
    for (const char* s : io::kSplitNames)
      if (ds.has_split(s)) have += (have.empty() ? "" : ", ") + std::string(s);
    throw InputError("data." + std::string(key) + " = '" + name + "': dataset file " + path + " has no such split (it has: " +
                     (have.empty() ? std::string("none") : have) + ")");
  }
}

// Temporary files a killed writer left in the run folder (checkpoint.h5.tmp.<pid>, ...). Only
// called with the folder's lock held, so no live writer owns them.
void remove_leftover_temps(const std::filesystem::path& out, bool quiet) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(out, ec)) {
    const std::string name = e.path().filename().string();
    const auto pos = name.rfind(".tmp.");
    if (pos == std::string::npos || pos + 5 >= name.size() ||
        name.find_first_not_of("0123456789", pos + 5) != std::string::npos || !e.is_regular_file(ec))
      continue;
    std::error_code rm;
    if (std::filesystem::remove(e.path(), rm) && !quiet)
      std::printf("removed leftover temporary file %s\n", e.path().c_str());
  }
}

const char* signal_text(int sig) {
  // A stop request may have reached only another rank: this rank's flag is then 0.
  static thread_local char buf[64];
  if (sig == 0) return "a stop signal (received by another rank)";
  std::snprintf(buf, sizeof buf, "stop signal %d", sig);
  return buf;
}

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
  install_stop_signal_handlers();  // main() installed them before MPI_Init; idempotent
  const std::filesystem::path out = cfg.values.at("train").at("out").get<std::string>();
  // A stop request during start-up (MPI_Init, config): requeue without training.
  if (agree_stop(comm)) {
    if (comm.rank() == 0)
      std::fprintf(stderr, "crackseg train: %s received during start-up: nothing trained, %s untouched; exiting %d so "
                           "the job can be requeued\n", signal_text(stop_signal()), out.c_str(), cli::kPreempted);
    return cli::kPreempted;
  }
  // Rank 0 decides, everyone follows: 1 = the run is finished (leave it alone), 2 = the folder
  // is locked by another writer. The lock is held until this process ends.
  std::unique_ptr<FolderLock> lock;
  std::string finished, refusal;
  int64_t verdict = 0;
  if (comm.rank() == 0) {
    if (!opts.no_resume) finished = finished_run(out, cfg.hash);
    if (finished.empty()) {
      try {
        lock = std::make_unique<FolderLock>(out, "crackseg train");
        if (!opts.no_resume) finished = finished_run(out, cfg.hash);  // finished while we waited for the lock
      } catch (const InputError& e) {
        refusal = e.what();
      }
    }
    verdict = !refusal.empty() ? 2 : !finished.empty() ? 1 : 0;
  }
  verdict = comm.allreduce_value(verdict, dist::ReduceOp::max);
  if (verdict == 2) {
    if (comm.rank() == 0) std::fprintf(stderr, "crackseg train: error: %s\n", refusal.c_str());
    return cli::kBadInput;
  }
  if (verdict == 1) {
    if (comm.rank() == 0)
      std::printf("crackseg train: %s holds a finished run (%s): nothing to do, no file touched "
                  "(--no-resume trains it again)\n", (out / "result.json").c_str(), finished.c_str());
    return cli::kOk;
  }
  if (comm.rank() == 0) remove_leftover_temps(out, opts.quiet);
  check_splits(cfg.values.at("data"));
  train::TrainOptions to;
  to.resume = !opts.no_resume;
  to.quiet = opts.quiet;
  // data.stage = "node": one rank per node copies the dataset to node-local storage; the copy
  // is removed when `stage` goes out of scope (success, error, preemption).
  std::optional<io::NodeStage> stage;
  const auto& data = cfg.values.at("data");
  if (data.at("stage").get<std::string>() == "node") {
    io::StageOptions so;
    so.dir = data.at("stage_dir").get<std::string>();
    so.stop_requested = [] { return stop_requested(); };
    so.stall_s = cfg.values.at("dist").at("timeout_s").get<double>();  // a stuck copy ends the run
    stage.emplace(data.at("path").get<std::string>(), so, MPI_COMM_WORLD);
    if (stage->stopped()) {
      if (comm.rank() == 0)
        std::fprintf(stderr, "crackseg train: %s received while staging the dataset; exiting %d so the "
                             "job can be requeued\n", signal_text(stop_signal()), cli::kPreempted);
      return cli::kPreempted;
    }
    to.extra_result["staging"] = stage->record().to_json();
    if (comm.rank() == 0 && !opts.quiet)
      std::printf("staged %s to %s on %d node(s): %.1f MB in %.2f s\n", data.at("path").get<std::string>().c_str(),
                  stage->record().path.c_str(), stage->record().nodes, stage->record().bytes / 1e6,
                  stage->record().copy_s);
  }
  try {
    const auto outcome = train::run_training(cfg, comm, to);
    if (outcome.status == train::TrainStatus::preempted) {
      if (comm.rank() == 0)
        std::fprintf(stderr, "crackseg train: %s received: checkpoint written to %s/checkpoint.h5; "
                             "exiting %d so the job can be requeued\n",
                     signal_text(stop_signal()), out.c_str(), cli::kPreempted);
      return cli::kPreempted;
    }
  } catch (const train::DivergedError& e) {
    std::fprintf(stderr, "crackseg train: %s\n", e.what());
    return cli::kDiverged;
  } catch (const dist::CollectiveTimeout& e) {
    std::fprintf(stderr, "crackseg train: %s; aborting the job\n", e.what());
    std::fflush(stderr);
    if (stage) stage->remove_now();  // MPI_Abort unwinds nothing
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
    .stop_signals = true,
}};

}  // namespace
