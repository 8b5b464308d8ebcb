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
  std::string per_image;
} opts;

// A CSV field: quoted when it holds a comma, quote or newline.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// --per-image: one row per evaluated image, for significance tests across models. The
// per-image scores average to the printed (mean) metrics, ap over the rows with crack
// pixels to the mAP; ap is empty for an image without crack pixels.
std::string per_image_csv(const std::string& data, const crackseg::train::EvalResult& r, bool header) {
  std::string out;
  if (header)
    out = "dataset,name,source,precision,recall,f1,iou,dice,accuracy,ap,crack_pixels,predicted_pixels,tp,fp,fn,tn,"
          "threshold\n";
  const double thr = r.summary.at("threshold").get<double>();
  char buf[512];
  for (const auto& row : r.per_image) {
    const auto& s = row.scores;
    std::string ap;
    if (s.has_ap) {
      std::snprintf(buf, sizeof buf, "%.17g", s.ap);
      ap = buf;
    }
    std::snprintf(buf, sizeof buf, ",%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%s,%lld,%lld,%lld,%lld,%lld,%lld,%.17g\n",
                  s.scores.precision, s.scores.recall, s.scores.f1, s.scores.iou, s.scores.dice, s.scores.accuracy,
                  ap.c_str(), static_cast<long long>(s.crack_pixels), static_cast<long long>(s.predicted_pixels),
                  static_cast<long long>(s.counts.tp), static_cast<long long>(s.counts.fp),
                  static_cast<long long>(s.counts.fn), static_cast<long long>(s.counts.tn), thr);
    out += csv_field(data) + "," + csv_field(row.name) + "," + csv_field(row.source) + buf;
  }
  return out;
}

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
    if (!opts.per_image.empty()) {
      train::write_file_atomic(opts.per_image, per_image_csv(cfg["data"]["path"].get<std::string>(), r, true));
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
          app.add_option("--data", opts.data, "dataset (default: the run's data.path)")->check(CLI::ExistingFile);
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
