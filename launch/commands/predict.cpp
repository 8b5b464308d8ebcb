// `crackseg predict --checkpoint C.h5 IMAGE... --out DIR [--mask-dir DIR]`: probability,
// binary mask (<stem>_pred_mask.png, never a ground-truth name) and overlay PNGs per image,
// any size and format; metrics when masks are given.
#include <cstdio>
#include <map>
#include <fstream>


#include "io/image/image.hpp"
#include "io/image/prediction.hpp"
#include "src/core/error.hpp"
#include "launch/command.hpp"
#include "src/metrics/metrics.hpp"
#include "src/train/evaluate.hpp"
#include "src/train/inference.hpp"
#include "src/train/train_state.hpp"

namespace {

struct Opts {
  std::string checkpoint, out, mask_dir, backend = "auto", patch_mode;
  std::vector<std::string> images;
  double threshold = -1;
  int tile = 0;
  bool npy = false;
} opts;

// (H, W) float32 probabilities as a NumPy .npy file (format 1.0), for exact comparisons
// (the PNG is 8-bit): scripts/export_onnx.py checks exported models against it.
void write_npy(const std::filesystem::path& path, const std::vector<float>& v, int H, int W) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(H) + ", " +
                       std::to_string(W) + "), }";
  const size_t unpadded = 10 + header.size() + 1;  // magic, version, length, header, '\n'
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char le[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(le, 2);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  if (!out.flush()) throw crackseg::Error("cannot write " + path.string());
}

std::filesystem::path find_mask(const std::filesystem::path& image) {
  if (opts.mask_dir.empty()) return {};
  const auto stem = image.stem().string();
  for (const auto& e : std::filesystem::directory_iterator(opts.mask_dir)) {
    const auto s = e.path().stem().string();
    if (crackseg::io::is_image_file(e.path()) && (s == stem || s == stem + "_mask")) return e.path();
  }
  return {};
}

// --threshold; else a fixed eval.threshold; else (tuned on the validation split) the threshold
// the run recorded in result.json next to the checkpoint: best.val for best.h5, final.val
// otherwise; else 0.5, said so.
double prediction_threshold(const nlohmann::json& cfg) {
  if (opts.threshold >= 0) return opts.threshold;
  if (const auto t = crackseg::train::fixed_threshold(cfg)) return *t;
  const std::filesystem::path ckpt = opts.checkpoint;
  std::ifstream in(ckpt.parent_path() / "result.json");
  if (in) {
    const auto r = nlohmann::json::parse(in, nullptr, false);
    const char* part = ckpt.filename() == "best.h5" ? "best" : "final";
    if (!r.is_discarded() && r.contains(part) && r[part].contains("val") && r[part]["val"].is_object() &&
        r[part]["val"].contains("threshold")) {
      const double t = r[part]["val"]["threshold"].get<double>();
      std::printf("threshold %.4f: chosen on the validation split (%s, %s.val)\n", t,
                  (ckpt.parent_path() / "result.json").c_str(), part);
      return t;
    }
  }
  std::printf("threshold 0.5: eval.threshold is tuned on the validation split, but no result.json beside %s "
              "records one (give --threshold)\n", ckpt.c_str());
  return 0.5;
}

int run() {
  using namespace crackseg;
  auto loaded = train::load_model_from_checkpoint(opts.checkpoint, opts.backend);
  const auto& cfg = loaded.cfg.values;
  const double thr = prediction_threshold(cfg);
  train::InferenceOptions io_opt = train::inference_options(cfg);
  if (opts.tile > 0) io_opt.tile = opts.tile;
  if (!opts.patch_mode.empty()) io_opt.patch_mode = opts.patch_mode;
  train::Predictor predictor(*loaded.model, io_opt);
  // Outputs are named by stem: a.png, a.jpg and sub/a.png would overwrite each other.
  std::map<std::string, std::string> by_stem;
  for (const auto& p : opts.images)
    if (auto [it, fresh] = by_stem.emplace(std::filesystem::path(p).stem().string(), p); !fresh)
      throw InputError("predict: " + it->second + " and " + p + " would both write " +
                       (std::filesystem::path(opts.out) / it->first).string() +
                       "_*.png; predict them into different --out folders");
  std::filesystem::create_directories(opts.out);
  MetricLayout layout;
  layout.num_images = static_cast<int64_t>(opts.images.size());
  layout.bins = static_cast<int>(cfg.at("eval").at("bins").get<int64_t>());
  layout.threshold = thr;
  MetricCounts counts(layout);
  int with_masks = 0;
  int64_t image_no = 0;
  for (const auto& path_s : opts.images) {
    const std::filesystem::path path = path_s;
    const cv::Mat rgb = io::load_image_rgb(path);
    const int H = rgb.rows, W = rgb.cols;
    std::vector<float> x(static_cast<std::size_t>(H) * W * 3);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = rgb.data[i] / 255.0f;
    const std::vector<float> prob = predictor.predict(x.data(), H, W);
    const io::PredictionImages pi = io::render_prediction(
        std::span<const uint8_t>(rgb.data, rgb.total() * 3), prob, H, W, thr);
    const auto base = std::filesystem::path(opts.out) / path.stem();
    io::save_prediction(base, pi, H, W);
    if (opts.npy) write_npy(base.string() + "_prob.npy", prob, H, W);
    const auto& mask = pi.mask;
    std::string line = path.filename().string() + ": " + std::to_string(W) + "x" + std::to_string(H) + ", crack " +
                       std::to_string(100.0 * std::count(mask.begin(), mask.end(), 1) / mask.size()) + "%";
    if (const auto mpath = find_mask(path); !mpath.empty()) {
      const cv::Mat gt = io::load_mask01(mpath);
      if (gt.rows != H || gt.cols != W)
        throw InputError("mask " + mpath.string() + " is " + std::to_string(gt.cols) + "x" + std::to_string(gt.rows) +
                         " but image " + path.string() + " is " + std::to_string(W) + "x" + std::to_string(H));
      counts.add_image(image_no, 0, prob, std::span<const uint8_t>(gt.data, gt.total()));
      const int64_t one[] = {image_no};
      const MetricSummary m = summarize(counts, one);
      char buf[96];
      std::snprintf(buf, sizeof buf, ", F1 %.4f, IoU %.4f, AP %.4f", m.mean.f1, m.mean.iou, m.map);
      line += buf;
      ++with_masks;
    }
    std::printf("%s -> %s_{prob,pred_mask,overlay}.png\n", line.c_str(), base.c_str());
    ++image_no;
  }
  if (with_masks > 0) {
    const nlohmann::json s = compute_metrics(counts).all.to_json();
    std::printf("%d image(s) with masks: F1 %.4f, precision %.4f, recall %.4f, IoU %.4f, mAP %.4f\n", with_masks,
                s["f1"].get<double>(), s["precision"].get<double>(), s["recall"].get<double>(), s["iou"].get<double>(),
                s["map"].get<double>());
    std::ofstream(std::filesystem::path(opts.out) / "metrics.json") << s.dump(2) << "\n";
  }
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "predict",
    .help = "crack probability, mask and overlay PNGs (<stem>_prob, _pred_mask, _overlay) for images of any size",
    .setup =
        [](CLI::App& app) {
          app.add_option("--checkpoint", opts.checkpoint, "checkpoint (checkpoint.h5 or best.h5)")->required()->check(CLI::ExistingFile);
          app.add_option("images", opts.images, "image files")->required()->check(CLI::ExistingFile);
          app.add_option("--out", opts.out, "output folder")->required();
          app.add_option("--mask-dir", opts.mask_dir, "ground-truth masks (same stem, or <stem>_mask) for metrics");
          app.add_option("--threshold", opts.threshold, "probability threshold (default: the run's eval.threshold; when that is tuned on the "
                         "validation split, the value its result.json records)");
          app.add_option("--tile", opts.tile, "tile side for Spiral-Net/hourglass (default: eval.tile)");
          app.add_option("--patch-mode", opts.patch_mode, "patch CNN: auto | dense | patch (default: eval.patch_mode)")
              ->check(CLI::IsMember({"auto", "dense", "patch"}));
          app.add_option("--backend", opts.backend, "reference | onednn | cuda | auto")->capture_default_str();
          app.add_flag("--save-npy", opts.npy, "also write the float32 probabilities as <stem>_prob.npy");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
