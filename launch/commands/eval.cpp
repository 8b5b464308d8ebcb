// `crackseg eval --checkpoint C.h5 --data D.h5 [--split test] [--out FILE.json]`: metrics of a
// trained model on a dataset split, sharded across MPI ranks without padding or duplicates.
#include <cstdio>
#include <fstream>

#include "launch/command.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/run_files.hpp"
#include "src/train/train_state.hpp"

namespace {

struct Opts {
  std::string checkpoint, data, split = "test", out, backend = "auto";
  double threshold = -1;
  std::string patch_mode;
  int64_t max_images = 0;
} opts;

int run() {
  using namespace crackseg;
  auto loaded = train::load_model_from_checkpoint(opts.checkpoint, opts.backend);
  nlohmann::json cfg = loaded.cfg.values;
  if (!opts.data.empty()) cfg["data"]["path"] = opts.data;
  if (opts.threshold >= 0) cfg["eval"]["threshold"] = opts.threshold;
  if (!opts.patch_mode.empty()) cfg["eval"]["patch_mode"] = opts.patch_mode;
  dist::MpiCommunicator comm(MPI_COMM_WORLD, cfg.at("dist").at("timeout_s").get<double>());
  const auto r = train::evaluate_split(cfg, *loaded.model, comm, opts.split, opts.max_images);
  nlohmann::json out = r.summary;
  out["checkpoint"] = opts.checkpoint;
  out["data"] = cfg["data"]["path"];
  out["split"] = opts.split;
  out["config_hash"] = loaded.cfg.hash;
  if (comm.rank() == 0) {
    const auto& mean = out;
    std::printf("%s split '%s': %lld images  F1 %.4f  precision %.4f  recall %.4f  IoU %.4f  AP %.4f  ODS %.4f  OIS %.4f\n",
                out["data"].get<std::string>().c_str(), opts.split.c_str(), static_cast<long long>(out["images"].get<int64_t>()),
                mean["f1"].get<double>(), mean["precision"].get<double>(), mean["recall"].get<double>(),
                mean["iou"].get<double>(), out["map"].get<double>(), out["ods"].get<double>(), out["ois"].get<double>());
    if (!opts.out.empty()) {
      train::write_file_atomic(opts.out, out.dump(2) + "\n");
      std::printf("metrics written to %s\n", opts.out.c_str());
    }
  }
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "eval",
    .help = "evaluate a checkpoint on a dataset split (sharded over MPI ranks)",
    .setup =
        [](CLI::App& app) {
          app.add_option("--checkpoint", opts.checkpoint, "checkpoint.h5 or best.h5")->required()->check(CLI::ExistingFile);
          app.add_option("--data", opts.data, "dataset (default: the run's data.path)")->check(CLI::ExistingFile);
          app.add_option("--split", opts.split, "train | val | test")->capture_default_str();
          app.add_option("--out", opts.out, "also write the metrics as JSON here");
          app.add_option("--threshold", opts.threshold, "probability threshold (default: the run's eval.threshold)");
          app.add_option("--patch-mode", opts.patch_mode, "patch CNN: auto | dense | patch (default: the run's eval.patch_mode)")
              ->check(CLI::IsMember({"auto", "dense", "patch"}));
          app.add_option("--max-images", opts.max_images, "evaluate at most this many images (0 = all)");
          app.add_option("--backend", opts.backend, "reference | onednn | cuda | auto")->capture_default_str();
        },
    .run = run,
}};

}  // namespace
