#include "src/core/runtime.hpp"

#include <mpi.h>

#include <Kokkos_Core.hpp>

#include "src/core/mpi_check.hpp"
#include "src/core/node_rank.hpp"

namespace crackseg {

Runtime::Runtime(int* argc, char*** argv, bool init_mpi) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized && init_mpi) {
    int provided = 0;
    CRACKSEG_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    we_initialized_mpi_ = true;
    initialized = 1;
  }
  if (initialized) {
    CRACKSEG_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    CRACKSEG_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank_));
    CRACKSEG_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size_));
    // Every rank builds its Runtime here, so this collective is safe; the CUDA context
    // picks its GPU from the node-local rank it records.
    set_process_node_rank(node_rank(MPI_COMM_WORLD));
  }
  // Kokkos gets only the program name: it would otherwise consume subcommand options such as
  // `--threads 2` (its own flag) and reject their values. Threads come from OMP_NUM_THREADS.
  if (!Kokkos::is_initialized()) {
    int kargc = 1;
    char* kargv[] = {(*argv)[0], nullptr};
    Kokkos::initialize(kargc, kargv);
  }
}

Runtime::~Runtime() {
  if (Kokkos::is_initialized()) Kokkos::finalize();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (we_initialized_mpi_ && !finalized) MPI_Finalize();
}

}  // namespace crackseg
