// `crackseg bench-predict`: whole-image prediction time of any model family, on a random
// image of a given size (default CrackForest's 480x320) or a given image, with fresh or
// checkpoint weights. Prints images/s and ms/image of the path `crackseg predict` takes:
//   U-Net / FlexUNet        the whole (reflect-padded) image in one forward
//   Spiral-Net / hourglass  overlapping --tile tiles, averaged
//   patch CNN               dense (shared convolutions, src/train/patch_dense.hpp) against
//                           one patch per pixel, the speed-up and how far the two probability
//                           maps are apart (rounding only: they compute the same function).
//
//   crackseg bench-predict --model unet base=16 --size 400 --json
//   crackseg bench-predict --model spiral_net width=0.25 --width 640 --height 480 --tile 255
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "io/image/image.hpp"
#include "launch/command.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/train/inference.hpp"
#include "src/train/patch_dense.hpp"
#include "src/train/train_state.hpp"

namespace {

struct Opts {
  std::string checkpoint, image, mode = "both", padding = "context", model = "patch_cnn", backend = "onednn";
  std::vector<std::string> keys;  // model key=value
  int width = 480, height = 320, repeat = 3, size = 0, tile = 255, batch = 4;
  bool json = false;
} opts;

// "key=value": the value as JSON when it parses as such (16, 0.25, [1,2]), else as a string.
nlohmann::json parse_value(const std::string& text) {
  auto v = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? nlohmann::json(text) : v;
}

nlohmann::json model_section() {
  nlohmann::json section = {{"name", opts.model}};
  if (opts.model == "patch_cnn") section.update({{"h", 13}, {"s", 2}, {"padding", opts.padding}});
  for (const auto& a : opts.keys) {
    const auto eq = a.find('=');
    if (eq == std::string::npos || eq == 0) throw crackseg::InputError("expected model key=value, got '" + a + "'");
    std::string key = a.substr(0, eq);
    if (key.rfind("model.", 0) == 0) key = key.substr(6);
    section[key] = parse_value(a.substr(eq + 1));
  }
  return section;
}

double seconds_per_image(crackseg::train::Predictor& p, const std::vector<float>& x, int H, int W, int repeat,
                         std::vector<float>& out) {
  out = p.predict(x.data(), H, W);  // warm-up: plans primitives, builds the dense graphs
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeat; ++r) out = p.predict(x.data(), H, W);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeat;
}

// U-Net family / Spiral-Net: the predict path, timed.
int run_segmentation(crackseg::Model& m, const std::vector<float>& x, int H, int W) {
  using namespace crackseg;
  train::InferenceOptions io;
  io.tile = opts.tile;
  io.batch = opts.batch;
  const bool tiled = m.name == "spiral_net" || m.name == "hourglass_unet";
  if (tiled) m.check_input_size(opts.tile, opts.tile);  // the tile must satisfy the 128k-1 rule
  train::Predictor p(m, io);
  std::vector<float> prob;
  const double s = seconds_per_image(p, x, H, W, opts.repeat, prob);
  double lo = 1, hi = 0;
  for (float v : prob) lo = std::min(lo, double(v)), hi = std::max(hi, double(v));
  nlohmann::json res{{"model", m.summary()},
                     {"family", m.name},
                     {"width", W},
                     {"height", H},
                     {"path", tiled ? "tiled" : "whole"},
                     {"repeat", opts.repeat},
                     {"threads", omp_get_max_threads()},
                     {"s_per_image", s},
                     {"ms_per_image", s * 1e3},
                     {"images_per_s", 1.0 / s},
                     {"prob_min", lo},
                     {"prob_max", hi}};
  if (tiled) res["tile"] = opts.tile;
  if (opts.json) {
    std::printf("%s\n", res.dump().c_str());
    return 0;
  }
  std::printf("%s on %dx%d, %s%s, %d thread(s)\n", m.summary().c_str(), W, H, tiled ? "tiled " : "whole image",
              tiled ? (std::to_string(opts.tile) + "x" + std::to_string(opts.tile)).c_str() : "", omp_get_max_threads());
  std::printf("%.2f ms/image  %.3f images/s (mean of %d after a warm-up)\n", s * 1e3, 1.0 / s, opts.repeat);
  return 0;
}

int run() {
  using namespace crackseg;
  train::LoadedModel loaded;
  if (!opts.checkpoint.empty()) {
    loaded = train::load_model_from_checkpoint(opts.checkpoint, opts.backend);
  } else {
    loaded.model = build_model(model_section());
    loaded.backend = make_backend(opts.backend);
    loaded.model->graph.instantiate(*loaded.backend, 126);
  }
  Model& m = *loaded.model;
  int H = opts.size > 0 ? opts.size : opts.height, W = opts.size > 0 ? opts.size : opts.width;
  std::vector<float> x;
  if (!opts.image.empty()) {
    const cv::Mat rgb = io::load_image_rgb(opts.image);
    H = rgb.rows;
    W = rgb.cols;
    x.resize(rgb.total() * 3);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = rgb.data[i] / 255.0f;
  } else {
    x.resize(static_cast<std::size_t>(H) * W * 3);
    SampleRng rng(1, 0, 0, Purpose::noise);
    for (auto& v : x) v = rng.uniform();
  }
  if (m.output != Model::Output::patch) return run_segmentation(m, x, H, W);
  const train::PatchGeometry geo = train::PatchGeometry::of(m);
  const double patch_macs = m.graph.forward_macs_per_sample({3, geo.side, geo.side});
  const double dense_macs = geo.dense_macs_per_pixel();
  nlohmann::json res{{"model", m.summary()}, {"family", m.name}, {"width", W}, {"height", H}, {"path", opts.mode},
                     {"patch_macs_per_pixel", patch_macs}, {"dense_macs_per_pixel", dense_macs}};
  std::vector<float> dense, patch;
  if (opts.mode != "patch") {
    train::InferenceOptions io;
    io.patch_mode = "dense";
    train::Predictor p(m, io);
    res["dense_s"] = seconds_per_image(p, x, H, W, opts.repeat, dense);
    res["dense_gflops"] = 2.0 * dense_macs * H * W / res["dense_s"].get<double>() / 1e9;
    res["ms_per_image"] = res["dense_s"].get<double>() * 1e3;
    res["images_per_s"] = 1.0 / res["dense_s"].get<double>();
  }
  if (opts.mode != "dense") {
    train::InferenceOptions io;
    io.patch_mode = "patch";
    train::Predictor p(m, io);
    res["patch_s"] = seconds_per_image(p, x, H, W, 1, patch);
    res["patch_gflops"] = 2.0 * patch_macs * H * W / res["patch_s"].get<double>() / 1e9;
    if (!res.contains("ms_per_image")) {
      res["ms_per_image"] = res["patch_s"].get<double>() * 1e3;
      res["images_per_s"] = 1.0 / res["patch_s"].get<double>();
    }
  }
  if (opts.mode == "both") {
    res["speedup"] = res["patch_s"].get<double>() / res["dense_s"].get<double>();
    double max_diff = 0;
    int64_t flips = 0;
    for (std::size_t i = 0; i < dense.size(); ++i) {
      max_diff = std::max(max_diff, static_cast<double>(std::abs(dense[i] - patch[i])));
      flips += (dense[i] >= 0.5f) != (patch[i] >= 0.5f);
    }
    res["max_abs_diff"] = max_diff;
    res["mask_pixels_differing"] = flips;
  }
  if (opts.json) {
    std::printf("%s\n", res.dump().c_str());
    return 0;
  }
  std::printf("%s on %dx%d\n", m.summary().c_str(), W, H);
  if (res.contains("dense_s"))
    std::printf("dense (shared convs): %8.3f s/image  %6.1f GFLOP/s  %.0f k MAC/pixel\n", res["dense_s"].get<double>(),
                res["dense_gflops"].get<double>(), dense_macs / 1e3);
  if (res.contains("patch_s"))
    std::printf("per-patch:            %8.3f s/image  %6.1f GFLOP/s  %.0f k MAC/pixel\n", res["patch_s"].get<double>(),
                res["patch_gflops"].get<double>(), patch_macs / 1e3);
  if (res.contains("speedup"))
    std::printf("speed-up %.1fx; max |dense - patch| %.2e, %lld mask pixels differ at 0.5\n", res["speedup"].get<double>(),
                res["max_abs_diff"].get<double>(), static_cast<long long>(res["mask_pixels_differing"].get<int64_t>()));
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "bench-predict",
    .help = "prediction speed of any model (images/s, ms/image; whole image or tiled; patch CNN dense vs per patch)",
    .setup =
        [](CLI::App& app) {
          app.add_option("--model", opts.model, "fresh model family: patch_cnn | unet | hourglass_unet | spiral_net | flex_unet")
              ->capture_default_str();
          app.add_option("keys", opts.keys, "model key=value (as in crackseg models), e.g. base=16 depth=4");
          app.add_option("--checkpoint", opts.checkpoint, "checkpoint (default: fresh --model weights)")
              ->check(CLI::ExistingFile);
          app.add_option("--size", opts.size, "random square image side (overrides --width/--height)");
          app.add_option("--tile", opts.tile, "Spiral-Net / hourglass tile side (128k-1)")->capture_default_str();
          app.add_option("--batch", opts.batch, "tiles / patches per forward")->capture_default_str();
          app.add_option("--backend", opts.backend, "reference | onednn")->capture_default_str();
          app.add_option("--image", opts.image, "image file (default: random pixels)")->check(CLI::ExistingFile);
          app.add_option("--padding", opts.padding, "fresh model's model.padding: context | same (same: --mode patch only)")
              ->check(CLI::IsMember({"context", "same"}))->capture_default_str();
          app.add_option("--width", opts.width, "random image width")->capture_default_str();
          app.add_option("--height", opts.height, "random image height")->capture_default_str();
          app.add_option("--mode", opts.mode, "patch CNN: dense | patch | both")->check(CLI::IsMember({"dense", "patch", "both"}))->capture_default_str();
          app.add_option("--repeat", opts.repeat, "timed repetitions after a warm-up (patch CNN per-patch runs once)")
              ->check(CLI::PositiveNumber)->capture_default_str();
          app.add_flag("--json", opts.json, "one JSON object");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
