// Process-wide runtime: MPI (thread level FUNNELED: only the main thread calls MPI; the
// prefetch thread does pure HDF5 reads through its own file handle) and Kokkos, initialised
// in order and finalised in reverse by RAII. Construct exactly one, in main().
#pragma once

namespace crackseg {

class Runtime {
 public:
  // init_mpi = false: Kokkos only (subcommands that never communicate skip MPI's start-up,
  // which costs a noticeable fraction of a second per call in sweep tooling).
  Runtime(int* argc, char*** argv, bool init_mpi = true);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  [[nodiscard]] int rank() const { return rank_; }
  [[nodiscard]] int size() const { return size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
  bool we_initialized_mpi_ = false;
};

}  // namespace crackseg
