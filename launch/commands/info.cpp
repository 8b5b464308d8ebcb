// `crackseg info FILE.h5`: what a dataset holds (counts per split and source, image size,
// crack-pixel fraction). Checkpoints (root attribute kind = "checkpoint") belong to the
// checkpoint code; this command only says so.
#include <cstdio>
#include <map>

#include "io/dataset/dataset.hpp"
#include "io/h5/util.hpp"
#include "launch/command.hpp"

namespace {

std::string file;

int run() {
  using namespace crackseg;
  const std::string kind = io::hdf5_file_kind(file);
  if (kind == "checkpoint") {
    std::printf("%s: crackseg checkpoint (not a dataset); see `crackseg eval --checkpoint`\n", file.c_str());
    return 0;
  }
  if (!kind.empty() && kind != "dataset")
    throw InputError(file + ": crackseg file of kind '" + kind + "', which info does not know");
  io::DatasetFile f(file);
  std::printf("%s: crackseg dataset, format %lld, written by %s\n", file.c_str(),
              static_cast<long long>(f.format_version()), f.creator_version().c_str());
  if (h5::has_attribute(f.file_id(), "origin"))
    std::printf("origin: %s\n", h5::read_string_attribute(f.file_id(), "origin").c_str());
  std::printf("images: %u of %dx%d (width x height), RGB\n", f.count(), f.width(), f.height());

  // Per source: total and per split; crack fractions are the ones the writer stored.
  std::map<std::string, std::array<uint32_t, 4>> table;  // train, val, test, total
  for (const auto& s : f.sources()) ++table[s][3];
  std::array<uint32_t, 3> split_total{};
  for (int k = 0; k < 3; ++k) {
    if (!f.has_split(io::kSplitNames[k])) continue;
    for (uint32_t i : f.split(io::kSplitNames[k])) {
      ++table[f.sources()[i]][k];
      ++split_total[k];
    }
  }
  std::printf("\n%-24s %8s %8s %8s %8s\n", "source", "train", "val", "test", "total");
  for (const auto& [src, c] : table) std::printf("%-24s %8u %8u %8u %8u\n", src.c_str(), c[0], c[1], c[2], c[3]);
  std::printf("%-24s %8u %8u %8u %8u\n", "all", split_total[0], split_total[1], split_total[2], f.count());
  std::printf("\ncrack-pixel fraction:");
  for (int k = 0; k < 3; ++k) std::printf("  %s %.4f", io::kSplitNames[k], f.crack_fraction(io::kSplitNames[k]));
  std::printf("\n");
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "info",
    .help = "describe a crackseg HDF5 file (dataset: splits, sources, size, crack fraction)",
    .setup = [](CLI::App& app) { app.add_option("file", file, "dataset or checkpoint .h5")->required(); },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
