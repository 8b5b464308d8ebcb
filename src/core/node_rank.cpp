#include "src/core/node_rank.hpp"

#include <cstdlib>
#include <string>

#include "src/core/error.hpp"
#include "src/core/mpi_check.hpp"

namespace crackseg {

namespace {
std::optional<NodeRank>& recorded() {
  static std::optional<NodeRank> r;
  return r;
}
}  // namespace

NodeRank node_rank(MPI_Comm comm) {
  MPI_Comm node = MPI_COMM_NULL;
  int world_rank = 0;
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(comm, &world_rank));
  CRACKSEG_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node));
  NodeRank r;
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(node, &r.local_rank));
  CRACKSEG_MPI_CHECK(MPI_Comm_size(node, &r.local_size));
  CRACKSEG_MPI_CHECK(MPI_Comm_free(&node));
  return r;
}

void set_process_node_rank(std::optional<NodeRank> r) { recorded() = r; }
std::optional<NodeRank> process_node_rank() { return recorded(); }

int process_local_rank() {
  if (const auto r = recorded()) return r->local_rank;
  for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PALS_LOCAL_RANKID",
                          "MV2_COMM_WORLD_LOCAL_RANK", "FLUX_TASK_LOCAL_ID"}) {
    if (const char* v = std::getenv(var); v != nullptr && *v != '\0') {
      char* end = nullptr;
      const long r = std::strtol(v, &end, 10);
      if (end != v && *end == '\0' && r >= 0) return static_cast<int>(r);
    }
  }
  return 0;
}

int device_for_local_rank(int local_rank, int visible_devices) {
  if (visible_devices < 1)
    throw Error("no CUDA device is visible to this process (local rank " + std::to_string(local_rank) + ", " +
                where_am_i() + ")");
  if (local_rank < 0) throw Error("device_for_local_rank: negative local rank " + std::to_string(local_rank));
  return local_rank % visible_devices;
}

}  // namespace crackseg
