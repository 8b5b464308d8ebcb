// `crackseg bench-predict`: whole-image prediction time of the patch CNN, dense (shared
// convolutions, src/train/patch_dense.hpp) against one patch per pixel, on a random image of
// CrackForest's size (480x320) or a given image, with fresh (model.padding=context by
// default) or checkpoint weights. Prints seconds per image, the speed-up, and how far the
// two probability maps are apart (rounding only: they compute the same function).
#include <chrono>
#include <cstdio>

#include "io/image/image.hpp"
#include "launch/command.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"
#include "src/train/inference.hpp"
#include "src/train/patch_dense.hpp"
#include "src/train/train_state.hpp"

namespace {

struct Opts {
  std::string checkpoint, image, mode = "both", padding = "context";
  int width = 480, height = 320, repeat = 3;
  bool json = false;
} opts;

double seconds_per_image(crackseg::train::Predictor& p, const std::vector<float>& x, int H, int W, int repeat,
                         std::vector<float>& out) {
  out = p.predict(x.data(), H, W);  // warm-up: plans primitives, builds the dense graphs
  const auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeat; ++r) out = p.predict(x.data(), H, W);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeat;
}

int run() {
  using namespace crackseg;
  train::LoadedModel loaded;
  if (!opts.checkpoint.empty()) {
    loaded = train::load_model_from_checkpoint(opts.checkpoint, "onednn");
  } else {
    loaded.model = build_model({{"name", "patch_cnn"}, {"h", 13}, {"s", 2}, {"padding", opts.padding}});
    loaded.backend = make_backend("onednn");
    loaded.model->graph.instantiate(*loaded.backend, 126);
  }
  Model& m = *loaded.model;
  if (m.output != Model::Output::patch) throw InputError("bench-predict: " + m.name + " is not a patch model");
  int H = opts.height, W = opts.width;
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
  const train::PatchGeometry geo = train::PatchGeometry::of(m);
  const double patch_macs = m.graph.forward_macs_per_sample({3, geo.side, geo.side});
  const double dense_macs = geo.dense_macs_per_pixel();
  nlohmann::json res{{"model", m.summary()}, {"width", W}, {"height", H},
                     {"patch_macs_per_pixel", patch_macs}, {"dense_macs_per_pixel", dense_macs}};
  std::vector<float> dense, patch;
  if (opts.mode != "patch") {
    train::InferenceOptions io;
    io.patch_mode = "dense";
    train::Predictor p(m, io);
    res["dense_s"] = seconds_per_image(p, x, H, W, opts.repeat, dense);
    res["dense_gflops"] = 2.0 * dense_macs * H * W / res["dense_s"].get<double>() / 1e9;
  }
  if (opts.mode != "dense") {
    train::InferenceOptions io;
    io.patch_mode = "patch";
    train::Predictor p(m, io);
    res["patch_s"] = seconds_per_image(p, x, H, W, 1, patch);
    res["patch_gflops"] = 2.0 * patch_macs * H * W / res["patch_s"].get<double>() / 1e9;
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
    .help = "patch CNN whole-image prediction: dense (shared convolutions) vs one patch per pixel",
    .setup =
        [](CLI::App& app) {
          app.add_option("--checkpoint", opts.checkpoint, "patch CNN checkpoint (default: fresh h=13 s=2 weights)")
              ->check(CLI::ExistingFile);
          app.add_option("--image", opts.image, "image file (default: random pixels)")->check(CLI::ExistingFile);
          app.add_option("--padding", opts.padding, "fresh model's model.padding: context | same (same: --mode patch only)")
              ->check(CLI::IsMember({"context", "same"}))->capture_default_str();
          app.add_option("--width", opts.width, "random image width")->capture_default_str();
          app.add_option("--height", opts.height, "random image height")->capture_default_str();
          app.add_option("--mode", opts.mode, "dense | patch | both")->check(CLI::IsMember({"dense", "patch", "both"}))->capture_default_str();
          app.add_option("--repeat", opts.repeat, "dense timing repetitions (per-patch runs once)")->capture_default_str();
          app.add_flag("--json", opts.json, "one JSON object");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
