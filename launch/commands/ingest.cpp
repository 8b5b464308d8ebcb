// `crackseg ingest DIR --layout pairs|crackseg9k|cfd|split-folders --out FILE.h5`: real image/mask folders
// into the HDF5 dataset schema (io/ingest/ingest.hpp).
#include <chrono>
#include <cstdio>
#include <sstream>

#include "io/ingest/ingest.hpp"
#include "io/ingest/interrupt.hpp"
#include "launch/command.hpp"

namespace {

struct Opts {
  std::string dir, out, layout = "pairs", size, split = "0.8,0.1,0.1", segments = "1";
  uint64_t seed = 126;
  bool skip_bad = false;
  int threads = 0;
  double val_from_train = 0;
} opts;

// "400" (square) or "480x320" (width x height, as image tools write it).
std::pair<int, int> parse_size(const std::string& s) {
  int w = 0, h = 0;
  char x = 0, extra = 0;
  std::istringstream in(s);
  if (s.find('x') == std::string::npos) {
    if ((in >> w) && !(in >> extra) && w > 0) return {w, w};
  } else if ((in >> w >> x >> h) && x == 'x' && !(in >> extra) && w > 0 && h > 0) {
    return {h, w};
  }
  throw crackseg::InputError("--size '" + s + "': expected S (square) or WxH, positive integers");
}

std::vector<int> parse_segments(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(part, &used);
    } catch (const std::exception&) {
    }
    if (used != part.size() || v < 0) throw crackseg::InputError("--cfd-segments '" + s + "': '" + part + "' is not a segment id");
    out.push_back(v);
  }
  if (out.empty()) throw crackseg::InputError("--cfd-segments is empty");
  return out;
}

int run() {
  using namespace crackseg;
  io::IngestOptions o;
  o.dir = opts.dir;
  o.out = opts.out;
  o.layout = io::parse_layout(opts.layout);
  if (!opts.size.empty()) std::tie(o.height, o.width) = parse_size(opts.size);
  o.split = io::parse_split_fractions(opts.split, opts.seed);  // split-folders: only the seed is used
  o.skip_bad = opts.skip_bad;
  o.cfd_segments = parse_segments(opts.segments);
  o.threads = opts.threads;
  o.val_from_train = opts.val_from_train;
  if (opts.val_from_train < 0 || opts.val_from_train >= 1)
    throw InputError("--val-from-train " + std::to_string(opts.val_from_train) + ": expected a fraction in [0, 1)");
  const auto t0 = std::chrono::steady_clock::now();
  uint32_t last_pct = 0;
  o.progress = [&](uint32_t done, uint32_t total) {
    const uint32_t pct = static_cast<uint32_t>(100ull * done / total);
    if (total >= 500 && (pct >= last_pct + 10 || done == total)) {
      last_pct = pct;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "ingest: %u/%u files (%u%%), %.1f files/s\n", done, total, pct, done / s);
    }
  };
  io::InterruptGuard guard;
  io::IngestResult r;
  try {
    r = io::ingest(o);
  } catch (const io::Interrupted& e) {
    std::fprintf(stderr, "crackseg ingest: %s; no output written\n", e.what());
    return 128 + e.signal();
  }
  std::printf("wrote %s: %u images %dx%d (width x height) from %s, layout %s, %.1f MB, %.1f s (%.1f images/s)\n",
              opts.out.c_str(), r.written, r.width, r.height, opts.dir.c_str(), opts.layout.c_str(),
              r.file_bytes / 1e6, r.seconds, r.written / r.seconds);
  std::printf("sources:");
  for (const auto& [s, n] : r.per_source) std::printf(" %s %u", s.c_str(), n);
  std::printf("\ncrack-pixel fraction: %.4f\n", r.crack_fraction);
  if (!r.skipped.empty()) {
    std::printf("skipped %zu bad file(s):\n", r.skipped.size());
    for (const auto& [f, why] : r.skipped) std::printf("  %s: %s\n", f.c_str(), why.c_str());
  }
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "ingest",
    .help = "convert an image/mask folder (pairs, crackseg9k, cfd) into a crackseg HDF5 dataset",
    .setup =
        [](CLI::App& app) {
          app.add_option("dir", opts.dir, "input folder")->required();
          app.add_option("--layout", opts.layout, "pairs | crackseg9k | cfd | split-folders (DIR/train, DIR/test, optional DIR/val: splits kept)")->capture_default_str();
          app.add_option("--out", opts.out, "output HDF5 file")->required();
          app.add_option("--size", opts.size, "resize to S x S or WxH (area for images, nearest for masks)");
          app.add_option("--split", opts.split, "train,val,test fractions (stratified by source)")->capture_default_str();
          app.add_option("--seed", opts.seed, "seed of the split")->capture_default_str();
          app.add_flag("--skip-bad", opts.skip_bad, "skip bad files (listed in the summary) instead of stopping");
          app.add_option("--val-from-train", opts.val_from_train,
                         "split-folders without val/: this fraction of train becomes val (stratified, --seed)")->capture_default_str();
          app.add_option("--cfd-segments", opts.segments, "cfd: segment ids that are crack, e.g. 1,3")->capture_default_str();
          app.add_option("--workers", opts.threads, "OpenMP worker threads for decoding (0 = OMP_NUM_THREADS / all cores)")->capture_default_str();
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
