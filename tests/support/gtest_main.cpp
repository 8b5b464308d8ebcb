// Shared main for every test executable: MPI (when launched under mpiexec or singleton) and
// Kokkos are initialised once; on ranks other than 0 gtest's printer is silenced so an MPI
// test prints one report.
#include <gtest/gtest.h>
#include <mpi.h>

#include "src/core/runtime.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  crackseg::Runtime runtime(&argc, &argv);
  if (runtime.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int rc = RUN_ALL_TESTS();
  // A failure on any rank fails the test on every rank (ctest sees rank 0's code too).
  int any = rc != 0 ? 1 : 0, all = 0;
  MPI_Allreduce(&any, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return all;
}
