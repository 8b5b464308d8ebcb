// `crackseg versions`: the library versions this binary was built with (also recorded in
// every result.json).
#include <cstdio>

#include "launch/command.hpp"
#include "src/train/provenance.hpp"

namespace {
crackseg::cli::CommandRegistration reg{{
    .name = "versions",
    .help = "print compiler, MPI, HDF5, oneDNN, Kokkos (and CUDA) versions as JSON",
    .setup = [](CLI::App&) {},
    .run = []() -> int {
      std::printf("%s\n", crackseg::versions_json().dump(2).c_str());
      return 0;
    },
    .needs_mpi = false,
}};
}  // namespace
