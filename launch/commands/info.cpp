// `crackseg info FILE.h5`: what a dataset holds (counts per split and source, image size,
// crack-pixel fraction) or what a checkpoint holds (model, position, config hash).
// `crackseg info --devices`: the GPUs this build can use (or why none).
#include <cstdio>
#include <map>

#include "io/dataset/dataset.hpp"
#include "io/h5/util.hpp"
#include "launch/command.hpp"
#include "src/checkpoint/checkpoint.hpp"
#ifdef CRACKSEG_HAVE_CUDA
#include "kernels/cuda/device.hpp"
#endif

namespace {

std::string file;
bool devices = false;

int describe_checkpoint() {
  crackseg::checkpoint::Info info;
  try {
    info = crackseg::checkpoint::read_info(file);
  } catch (const crackseg::InputError&) {
    throw;
  } catch (const crackseg::Error& e) {  // a file that says "checkpoint" but is not one is bad input
    throw crackseg::InputError(file + ": malformed crackseg checkpoint: " + e.what());
  }
  const auto cfg = nlohmann::json::parse(info.config_json);
  std::printf("%s: crackseg checkpoint, format %lld, written by crackseg %s (%s)\n", file.c_str(),
              static_cast<long long>(info.format_version), info.crackseg_version.c_str(), info.git_commit.c_str());
  std::printf("model: %s\n", cfg.at("model").dump().c_str());
  int64_t n = 0;
  for (const auto& p : info.params) n += crackseg::numel(p.dims);
  std::printf("parameters: %lld in %zu tensors; optimizer state: %zu tensors, step %lld\n", static_cast<long long>(n),
              info.params.size(), info.optim.size(), static_cast<long long>(info.optim_step));
  if (info.state.contains("position")) std::printf("position: %s\n", info.state["position"].dump().c_str());
  std::printf("config hash: %s (crackseg eval --checkpoint %s --data D.h5)\n", info.config_hash.c_str(), file.c_str());
  return 0;
}

int describe_devices() {
#ifdef CRACKSEG_HAVE_CUDA
  std::printf("%s\n", crackseg::cuda::describe_cuda_devices().c_str());
#else
  std::printf("no GPUs: this crackseg was built without CUDA (configure with the `cuda` preset)\n");
#endif
  return 0;
}

int run() {
  using namespace crackseg;
  if (devices) return describe_devices();
  if (file.empty()) throw InputError("info: give a FILE.h5 or --devices");
  const std::string kind = io::hdf5_file_kind(file);
  if (kind == "checkpoint") return describe_checkpoint();
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
    .help = "describe a dataset or checkpoint .h5, or list GPUs (--devices)",
    .setup =
        [](CLI::App& app) {
          app.add_option("file", file, "dataset or checkpoint .h5");
          app.add_flag("--devices", devices, "list the GPUs this build can use");
        },
    .run = run,
    .needs_mpi = false,
}};

}  // namespace
