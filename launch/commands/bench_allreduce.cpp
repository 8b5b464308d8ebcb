// `crackseg bench-allreduce` (under mpirun/srun): allreduce time and bandwidth over message
// size through the gradient sync's non-blocking path, next to this node's memcpy bandwidth:
// the inputs of the README's scaling model. Prints a table on rank 0, or JSON with --json.
#include <cstdio>

#include "launch/command.hpp"
#include "src/dist/bench.hpp"
#include "src/dist/mpi_communicator.hpp"

namespace {

struct Opts {
  bool json = false;
  double budget = 0.5;
  std::size_t max_mb = 64;
} opts;

int run() {
  using namespace crackseg;
  dist::MpiCommunicator comm(MPI_COMM_WORLD, 120.0);
  std::vector<std::size_t> sizes;
  for (std::size_t b = 4096; b <= opts.max_mb << 20; b *= 4) sizes.push_back(b);
  const nlohmann::json rows = dist::allreduce_bandwidth(comm, sizes, opts.budget);
  const double mem = dist::memcpy_bandwidth_GBps(std::size_t{64} << 20);
  if (comm.rank() != 0) return 0;
  if (opts.json) {
    std::printf("%s\n", nlohmann::json{{"ranks", comm.size()}, {"memcpy_GBps", mem}, {"allreduce", rows}}.dump().c_str());
    return 0;
  }
  std::printf("allreduce over %d rank(s); memcpy bandwidth %.2f GB/s per rank\n", comm.size(), mem);
  std::printf("%12s %12s %12s %12s %8s\n", "bytes", "time (us)", "algbw GB/s", "busbw GB/s", "exact");
  for (const auto& r : rows)
    std::printf("%12zu %12.1f %12.3f %12.3f %8s\n", r["bytes"].get<std::size_t>(), r["seconds"].get<double>() * 1e6,
                r["algbw_GBps"].get<double>(), r["busbw_GBps"].get<double>(), r["correct"].get<bool>() ? "yes" : "NO");
  return 0;
}

crackseg::cli::CommandRegistration reg{{
    .name = "bench-allreduce",
    .help = "allreduce time/bandwidth over message size vs memcpy bandwidth (run under mpirun)",
    .setup =
        [](CLI::App& app) {
          app.add_flag("--json", opts.json, "one JSON object");
          app.add_option("--budget", opts.budget, "seconds per message size")->capture_default_str();
          app.add_option("--max-mb", opts.max_mb, "largest message in MiB")->capture_default_str();
        },
    .run = run,
}};

}  // namespace
