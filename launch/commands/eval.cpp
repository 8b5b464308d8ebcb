// `crackseg eval --checkpoint C.h5 --data D.h5 [--data E.h5 ...] [--split test] [--out FILE.json]`:
// metrics of a trained model on a dataset split, sharded across MPI ranks without padding or
// duplicates. Several --data: the same split of each, one column per dataset in the printed
// table and one entry per dataset in the JSON ("datasets").
#include <cstdio>
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "launch/command.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/run_files.hpp"
#include "src/train/train_state.hpp"

namespace {

struct Opts {
  std::string checkpoint, split = "test", out, backend = "auto";
  std::vector<std::string> data;
  double threshold = -1;
  std::string patch_mode;
  int64_t max_images = 0;
  std::string per_image;
} opts;

// The printed line of one dataset (a single --data: the format scripts already parse).
void print_one(const nlohmann::json& out, const std::string& split) {
  std::printf("%s split '%s': %lld images  F1 %.4f  precision %.4f  recall %.4f  IoU %.4f  AP %.4f  ODS %.4f  OIS %.4f\n",
              out["data"].get<std::string>().c_str(), split.c_str(), static_cast<long long>(out["images"].get<int64_t>()),
              out["f1"].get<double>(), out["precision"].get<double>(), out["recall"].get<double>(), out["iou"].get<double>(),
              out["map"].get<double>(), out["ods"].get<double>(), out["ois"].get<double>());
}

// Several datasets: one row per metric, one column per dataset.
void print_table(const std::vector<nlohmann::json>& all, const std::string& split) {
  std::printf("split '%s'\n%-10s", split.c_str(), "metric");
  for (const auto& r : all) std::printf("  %s", r["data"].get<std::string>().c_str());
  std::printf("\n");
  std::vector<size_t> width;
  for (const auto& r : all) width.push_back(std::max<size_t>(6, r["data"].get<std::string>().size()));
  const char* rows[] = {"images", "f1", "precision", "recall", "iou", "dice", "map", "ods", "ois", "micro_f1"};
  for (const char* k : rows) {
    std::printf("%-10s", k);
    for (size_t c = 0; c < all.size(); ++c) {
      const auto& v = all[c].contains(k) ? all[c][k] : nlohmann::json();
      char buf[32] = "-";
      if (v.is_number_integer()) std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v.get<int64_t>()));
      else if (v.is_number()) std::snprintf(buf, sizeof buf, "%.4f", v.get<double>());
      const std::string cell = buf;
      std::printf("  %*s", static_cast<int>(width[c]), cell.c_str());
    }
    std::printf("\n");
  }
}

int run() {
  using namespace crackseg;
  auto loaded = train::load_model_from_checkpoint(opts.checkpoint, opts.backend);
  nlohmann::json cfg = loaded.cfg.values;
  if (opts.threshold >= 0) cfg["eval"]["threshold"] = opts.threshold;
  if (!opts.patch_mode.empty()) cfg["eval"]["patch_mode"] = opts.patch_mode;
  std::vector<std::string> paths = opts.data;
  if (paths.empty()) paths.push_back(cfg["data"]["path"].get<std::string>());
  dist::MpiCommunicator comm(MPI_COMM_WORLD, cfg.at("dist").at("timeout_s").get<double>());
  std::vector<nlohmann::json> all;
  std::string per_image;  // CSV text (every rank holds the gathered counts; rank 0 writes it)
  for (const auto& path : paths) {
    cfg["data"]["path"] = path;
    const auto r = train::evaluate_split(cfg, *loaded.model, comm, opts.split, opts.max_images);
    nlohmann::json out = r.summary;
    if (!opts.per_image.empty()) per_image += r.per_image_csv(path, per_image.empty());
    out["checkpoint"] = opts.checkpoint;
    out["data"] = path;
    out["split"] = opts.split;
    out["config_hash"] = loaded.cfg.hash;
    all.push_back(std::move(out));
  }
  if (comm.rank() == 0) {
    nlohmann::json doc;
    if (all.size() == 1) {
      print_one(all.front(), opts.split);
      doc = all.front();
    } else {
      print_table(all, opts.split);
      doc = {{"checkpoint", opts.checkpoint}, {"split", opts.split}, {"config_hash", loaded.cfg.hash},
             {"datasets", nlohmann::json::array()}};
      for (const auto& o : all) doc["datasets"].push_back(o);
    }
    if (!opts.out.empty()) {
      train::write_file_atomic(opts.out, doc.dump(2) + "\n");
      std::printf("metrics written to %s\n", opts.out.c_str());
    }
    if (!opts.per_image.empty()) {
      train::write_file_atomic(opts.per_image, per_image);
      std::printf("per-image metrics written to %s\n", opts.per_image.c_str());
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
          app.add_option("--data", opts.data, "dataset (default: the run's data.path); repeat for several, one column each")
              ->check(CLI::ExistingFile);
          app.add_option("--split", opts.split, "train | val | test")->capture_default_str();
          app.add_option("--out", opts.out, "also write the metrics as JSON here");
          app.add_option("--threshold", opts.threshold,
                         "probability threshold (default: the run's eval.threshold; \"val\"/\"auto\" tune it on the "
                         "dataset's validation split)");
          app.add_option("--patch-mode", opts.patch_mode, "patch CNN: auto | dense | patch (default: the run's eval.patch_mode)")
              ->check(CLI::IsMember({"auto", "dense", "patch"}));
          app.add_option("--max-images", opts.max_images, "evaluate at most this many images (0 = all)");
          app.add_option("--per-image", opts.per_image,
                         "also write one CSV row per image (dataset, name, source, P, R, F1, IoU, Dice, accuracy, AP, "
                         "crack and predicted pixels, tp/fp/fn/tn, threshold)");
          app.add_option("--backend", opts.backend, "reference | onednn | cuda | auto")->capture_default_str();
        },
    .run = run,
}};

}  // namespace
