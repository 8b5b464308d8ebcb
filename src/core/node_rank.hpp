// Where this process sits on its node, for choosing its GPU. The node-local rank comes from
// MPI itself (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED): the ranks sharing memory with this
// one, ordered by world rank), so it is right under every launcher (Open MPI, Slurm srun,
// MPICH/Hydra, Cray PALS, MVAPICH2, Flux), not only those that export a local-rank
// environment variable. Runtime computes it once after MPI_Init (a collective: every rank
// constructs the Runtime at the same point); the CUDA context reads the cached value.
#pragma once
#include <mpi.h>

#include <optional>

namespace crackseg {

struct NodeRank {
  int local_rank = 0;  // 0 .. local_size - 1 on this node
  int local_size = 1;  // ranks of `comm` on this node
};

// Collective over `comm`.
[[nodiscard]] NodeRank node_rank(MPI_Comm comm);

// The process-wide value Runtime records; empty before (or without) MPI_Init.
void set_process_node_rank(std::optional<NodeRank> r);
[[nodiscard]] std::optional<NodeRank> process_node_rank();

// This process's local rank: the recorded MPI value, else OMPI_COMM_WORLD_LOCAL_RANK,
// SLURM_LOCALID, MPI_LOCALRANKID, PALS_LOCAL_RANKID, MV2_COMM_WORLD_LOCAL_RANK,
// FLUX_TASK_LOCAL_ID (first set, non-negative integer), else 0.
[[nodiscard]] int process_local_rank();

// The device a local rank drives among `visible_devices` (the CUDA runtime's count, after
// CUDA_VISIBLE_DEVICES): local_rank % visible_devices, so per-task binding (each rank sees
// one GPU) gives 0 and node-wide visibility gives one GPU per local rank. Throws Error when
// visible_devices < 1 or local_rank < 0.
[[nodiscard]] int device_for_local_rank(int local_rank, int visible_devices);

}  // namespace crackseg
