// `crackseg synth`: the built-in synthetic crack dataset (io/synth/synth.hpp).
#include <chrono>
#include <cstdio>

#include "io/image/image.hpp"
#include "io/ingest/interrupt.hpp"
#include "io/synth/synth.hpp"
#include "launch/command.hpp"

namespace {

struct Opts {
  std::string out, split = "0.8,0.1,0.1", preview;
  uint32_t count = 9255;
  int size = 400, threads = 0;
  uint64_t seed = 126;
} opts;

int run() {
  using namespace crackseg;
  io::SynthOptions o;
  o.out = opts.out;
  o.count = opts.count;
  o.size = opts.size;
  o.seed = opts.seed;
  o.threads = opts.threads;
  o.split = io::parse_split_fractions(opts.split, opts.seed);
  const auto t0 = std::chrono::steady_clock::now();
  uint32_t last_pct = 0;
  o.progress = [&](uint32_t done, uint32_t total) {
    io::throw_if_interrupted();
    const uint32_t pct = static_cast<uint32_t>(100ull * done / total);
    if (pct >= last_pct + 10 || done == total) {
      last_pct = pct;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "synth: %u/%u images (%u%%), %.1f images/s, ETA %.0f s\n", done, total, pct,
                   done / s, (total - done) / (done / s));
    }
  };
  io::InterruptGuard guard;
  try {
    const auto r = io::write_synth_dataset(o);
    std::printf("wrote %s: %u images %dx%d, %.1f MB, crack fraction %.4f, %.1f s (%.1f images/s)\n",
                opts.out.c_str(), r.count, opts.size, opts.size, r.file_bytes / 1e6, r.crack_fraction, r.seconds,
                r.count / r.seconds);
  } catch (const io::Interrupted& e) {
    std::fprintf(stderr, "crackseg synth: %s; no output written\n", e.what());
    return 128 + e.signal();
  }
  if (!opts.preview.empty()) {
    std::filesystem::create_directories(opts.preview);
    const size_t hw = size_t(opts.size) * size_t(opts.size);
    std::vector<uint8_t> img(hw * 3), mask(hw);
    for (uint32_t i = 0; i < std::min<uint32_t>(4, opts.count); ++i) {
      io::synth_sample(opts.seed, i, opts.size, opts.size, img.data(), mask.data());
      const auto base = std::filesystem::path(opts.preview) / ("synth_" + std::to_string(i));
      io::save_image_rgb(base.string() + ".png", img.data(), opts.size, opts.size);
      io::save_mask01(base.string() + "_mask.png", mask.data(), opts.size, opts.size);
    }
    std::printf("preview PNGs of the first images in %s\n", opts.preview.c_str());
  }
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "synth",
    .help = "generate the built-in synthetic crack dataset (HDF5)",
    .setup =
        [](CLI::App& app) {
          app.add_option("--out", opts.out, "output HDF5 file")->required();
          app.add_option("--count", opts.count, "number of images")->capture_default_str()->check(CLI::PositiveNumber);
          app.add_option("--size", opts.size, "image height = width in pixels")->capture_default_str()->check(CLI::Range(16, 8192));
          app.add_option("--seed", opts.seed, "images and splits are a function of the seed")->capture_default_str();
          app.add_option("--split", opts.split, "train,val,test fractions")->capture_default_str();
          app.add_option("--workers", opts.threads, "OpenMP worker threads (0 = OMP_NUM_THREADS / all cores)")->capture_default_str();
          app.add_option("--preview", opts.preview, "also write the first 4 images and masks as PNG into this folder");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
