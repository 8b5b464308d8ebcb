// `crackseg bench-io`: dataset write/read throughput, not a test. Generates `--count` synthetic
// images of `--size`, measures synth (generate + compress + write) images/s and file size,
// then plain DatasetFile read images/s, then ingest images/s from a CrackSeg9k-style folder
// (JPEG images + PNG masks) made from the same images, or from `--dir` when given. Prints one
// line per phase and an extrapolation to CrackSeg9k's 9,255 images.
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "io/dataset/dataset.hpp"
#include "io/image/image.hpp"
#include "io/ingest/ingest.hpp"
#include "io/synth/synth.hpp"
#include "launch/command.hpp"

namespace {

struct Opts {
  uint32_t count = 1000;
  int size = 400, threads = 0;
  std::string tmp = "/tmp", dir, layout = "crackseg9k";
  bool keep = false, skip_ingest = false;
} opts;

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run() {
  using namespace crackseg;
  namespace fs = std::filesystem;
  const int threads = opts.threads > 0 ? opts.threads : omp_get_max_threads();
  const fs::path work = fs::path(opts.tmp) / ("crackseg-bench-io-" + std::to_string(getpid()));
  fs::create_directories(work);
  struct Cleanup {
    fs::path p;
    bool keep;
    ~Cleanup() {
      std::error_code ec;
      if (!keep) fs::remove_all(p, ec);
    }
  } cleanup{work, opts.keep};
  constexpr double kCrackSeg9k = 9255;
  std::printf("bench-io: %u images of %dx%d, %d threads, work folder %s\n", opts.count, opts.size, opts.size,
              threads, work.c_str());

  io::SynthOptions so;
  so.out = work / "synth.h5";
  so.count = opts.count;
  so.size = opts.size;
  so.threads = threads;
  const auto sr = io::write_synth_dataset(so);
  std::printf("synth : %8.1f images/s  %7.1f s  file %.1f MB (%.1f KB/image, raw %.1f KB)  -> 9255 images: %.0f s, %.2f GB\n",
              sr.count / sr.seconds, sr.seconds, sr.file_bytes / 1e6, sr.file_bytes / 1e3 / sr.count,
              opts.size * opts.size * 4 / 1e3, kCrackSeg9k / (sr.count / sr.seconds),
              sr.file_bytes / double(sr.count) * kCrackSeg9k / 1e9);

  {
    io::DatasetFile f(so.out);
    std::vector<uint8_t> img(f.image_bytes()), mask(f.mask_bytes());
    const auto t0 = std::chrono::steady_clock::now();
    for (uint32_t i = 0; i < f.count(); ++i) {
      f.read_image(i, img.data());
      f.read_mask(i, mask.data());
    }
    const double s = since(t0);
    std::printf("read  : %8.1f images/s  %7.1f s  (one thread, image + mask by hyperslab, inflate outside the HDF5 lock)\n",
                f.count() / s, s);
  }
  if (opts.skip_ingest) return 0;

  fs::path in = opts.dir;
  if (in.empty()) {
    // A CrackSeg9k-like folder: JPEG photos, PNG masks, `<source>_<id>` names.
    in = work / "folder";
    fs::create_directories(in / "images");
    fs::create_directories(in / "masks");
    const auto t0 = std::chrono::steady_clock::now();
    const size_t hw = size_t(opts.size) * opts.size;
#pragma omp parallel num_threads(threads)
    {
      std::vector<uint8_t> img(hw * 3), mask(hw);
#pragma omp for schedule(dynamic)
      for (uint32_t i = 0; i < opts.count; ++i) {
        const int style = io::synth_sample(so.seed, i, opts.size, opts.size, img.data(), mask.data());
        const std::string name = std::string(io::kSynthStyles[style]) + "_" + std::to_string(i);
        cv::Mat rgb(opts.size, opts.size, CV_8UC3, img.data()), bgr;
        cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
        cv::imwrite((in / "images" / (name + ".jpg")).string(), bgr, {cv::IMWRITE_JPEG_QUALITY, 92});
        io::save_mask01(in / "masks" / (name + ".png"), mask.data(), opts.size, opts.size);
      }
    }
    std::printf("(made %u JPEG + PNG pairs in %.1f s)\n", opts.count, since(t0));
  }
  io::IngestOptions io_opt;
  io_opt.dir = in;
  io_opt.out = work / "ingest.h5";
  io_opt.layout = io::parse_layout(opts.dir.empty() ? "crackseg9k" : opts.layout);
  io_opt.threads = threads;
  io_opt.skip_bad = true;
  const auto ir = io::ingest(io_opt);
  std::printf("ingest: %8.1f images/s  %7.1f s  file %.1f MB (%.1f KB/image), %zu skipped  -> 9255 images: %.0f s\n",
              ir.written / ir.seconds, ir.seconds, ir.file_bytes / 1e6, ir.file_bytes / 1e3 / ir.written,
              ir.skipped.size(), kCrackSeg9k / (ir.written / ir.seconds));
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "bench-io",
    .help = "benchmark dataset synth / read / ingest throughput (images/s, file size)",
    .setup =
        [](CLI::App& app) {
          app.add_option("--count", opts.count, "images")->capture_default_str()->check(CLI::PositiveNumber);
          app.add_option("--size", opts.size, "image side in pixels")->capture_default_str()->check(CLI::Range(16, 8192));
          app.add_option("--workers", opts.threads, "OpenMP worker threads (0 = all)")->capture_default_str();
          app.add_option("--tmp", opts.tmp, "scratch folder for the files")->capture_default_str();
          app.add_option("--dir", opts.dir, "ingest this folder instead of a generated one");
          app.add_option("--layout", opts.layout, "layout of --dir")->capture_default_str();
          app.add_flag("--keep", opts.keep, "keep the scratch files");
          app.add_flag("--skip-ingest", opts.skip_ingest, "only synth and read");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
