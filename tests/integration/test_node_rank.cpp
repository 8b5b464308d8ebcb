// ctest-labels: mpi
// ctest-ranks: 1 4
// ctest-link: crackseg_base
// GPU selection without launcher variables (issue 14 item 5): the node-local rank comes from
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), recorded by Runtime at start-up, and the device
// is local rank % visible devices. On this one node, 4 ranks must get local ranks 0..3 and
// devices 0..3 with 4 visible GPUs, 0,1,0,1 with 2, all 0 with per-task binding (1 visible),
// whatever a launcher variable says.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

#include "src/core/error.hpp"
#include "src/core/node_rank.hpp"

using namespace crackseg;

namespace {

std::vector<int> gather(int v, MPI_Comm comm) {
  int size = 0;
  MPI_Comm_size(comm, &size);
  std::vector<int> all(static_cast<std::size_t>(size));
  MPI_Allgather(&v, 1, MPI_INT, all.data(), 1, MPI_INT, comm);
  return all;
}

TEST(NodeRank, RanksOnOneNodeGetLocalRanksZeroToNMinusOne) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const auto recorded = process_node_rank();
  ASSERT_TRUE(recorded.has_value()) << "Runtime did not record the node-local rank";
  EXPECT_EQ(recorded->local_size, size);  // one node
  EXPECT_EQ(recorded->local_rank, rank);  // ordered by world rank
  const NodeRank again = node_rank(MPI_COMM_WORLD);
  EXPECT_EQ(again.local_rank, recorded->local_rank);
  auto locals = gather(recorded->local_rank, MPI_COMM_WORLD);
  std::sort(locals.begin(), locals.end());
  for (int i = 0; i < size; ++i) EXPECT_EQ(locals[static_cast<std::size_t>(i)], i);
}

TEST(NodeRank, TheMpiValueWinsOverLauncherVariables) {
  // A launcher variable that disagrees (or one left over from an outer job) is ignored once
  // MPI has said where the rank is.
  ASSERT_EQ(0, setenv("OMPI_COMM_WORLD_LOCAL_RANK", "7", 1));
  ASSERT_EQ(0, setenv("SLURM_LOCALID", "5", 1));
  EXPECT_EQ(process_local_rank(), process_node_rank()->local_rank);
  // Without an MPI value, the variables are read in order (PALS among them).
  const auto saved = process_node_rank();
  set_process_node_rank(std::nullopt);
  EXPECT_EQ(process_local_rank(), 7);
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  EXPECT_EQ(process_local_rank(), 5);
  unsetenv("SLURM_LOCALID");
  ASSERT_EQ(0, setenv("PALS_LOCAL_RANKID", "3", 1));
  EXPECT_EQ(process_local_rank(), 3);
  unsetenv("PALS_LOCAL_RANKID");
  set_process_node_rank(saved);
}

TEST(NodeRank, DeviceIsLocalRankModuloVisibleDevices) {
  const int local = process_local_rank();
  const auto dev4 = gather(device_for_local_rank(local, 4), MPI_COMM_WORLD);
  const auto dev2 = gather(device_for_local_rank(local, 2), MPI_COMM_WORLD);
  const auto dev1 = gather(device_for_local_rank(local, 1), MPI_COMM_WORLD);
  for (std::size_t r = 0; r < dev4.size(); ++r) {
    EXPECT_EQ(dev4[r], static_cast<int>(r) % 4);
    EXPECT_EQ(dev2[r], static_cast<int>(r) % 2);
    EXPECT_EQ(dev1[r], 0);  // per-task binding: each rank sees its own single GPU
  }
  // 4 ranks and 4 visible GPUs: every rank has its own.
  if (dev4.size() == 4) {
    auto d = dev4;
    std::sort(d.begin(), d.end());
    EXPECT_EQ(std::unique(d.begin(), d.end()) - d.begin(), 4);
  }
  EXPECT_THROW((void)device_for_local_rank(local, 0), Error);
  EXPECT_THROW((void)device_for_local_rank(-1, 2), Error);
}

TEST(NodeRank, SubCommunicatorsNumberTheirOwnRanks) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm half = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, rank / 2, rank, &half);
  const NodeRank r = node_rank(half);
  int hsize = 0;
  MPI_Comm_size(half, &hsize);
  EXPECT_EQ(r.local_size, hsize);
  EXPECT_EQ(r.local_rank, rank % 2);
  MPI_Comm_free(&half);
}

}  // namespace
