// Provenance for result.json: what built this binary, what it runs on, how it was started and
// where its data came from.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>

namespace crackseg {

// {"crackseg": ..., "git_commit": ..., "git_dirty": ..., "compiler": ..., "mpi": ...,
//  "hdf5": ..., "onednn": ..., "kokkos": ..., "opencv": ..., "cuda": ...}
[[nodiscard]] nlohmann::json versions_json();

// {"hostname", "cpu_model", "cpus", "isa": [avx2, avx512f, ..., amx_tile, ...]}: the ISA
// flags of /proc/cpuinfo that decide which oneDNN kernels run (avx*, fma, amx*).
[[nodiscard]] nlohmann::json host_json();

// {"command_line": this process's argv joined (from /proc/self/cmdline), "launcher":
//  "srun" | "mpirun (Open MPI)" | "mpirun (MPICH/Hydra)" | "direct" (from the launcher's
//  environment variables), "ranks", "threads_per_rank", and the SLURM job id when present}.
[[nodiscard]] nlohmann::json launch_json(int ranks, int threads_per_rank);

// The dataset file's ingest record: "origin" (the creating command), "options" (the
// ingest_options attribute synth/ingest write: size, split fractions, seed, layout, ...) and
// the stored split fractions and seed (/splits attributes). Absent attributes are left out.
[[nodiscard]] nlohmann::json dataset_ingest_json(const std::filesystem::path& dataset);

}  // namespace crackseg
