// Node-local staging of the dataset (data.stage = "node").
//
// Thousands of ranks reading one HDF5 file on a shared file system is the classic
// metadata/IO bottleneck. With staging, one rank per node (the node's rank 0 in
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)) copies the file to node-local storage, checks
// the copy's FNV-1a checksum against the one computed while reading the source, and the
// node's other ranks wait; then every DatasetFile opened for the source path opens the copy
// instead (a process-wide redirect that lives as long as the NodeStage). The run's config
// keeps the original path, so checkpoints and result.json name the real dataset.
//
// Where: data.stage_dir if set, else $SLURM_TMPDIR, else $TMPDIR, else /tmp; inside it a
// folder crackseg-stage-<job>-<node>-<pid> of its own (two "nodes" sharing one host, as in
// the tests, never collide). The copy is removed by the destructor: on success, on error
// (exceptions unwind through it) and on preemption (the signal only sets a flag; training
// returns normally). A SIGKILL cannot be cleaned up after: SLURM removes $SLURM_TMPDIR at
// the job's end where sites configure it (job_container/tmpfs); elsewhere use a per-job dir.
//
// Collective over `world`: every rank constructs it at the same point.
#pragma once
#include <mpi.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace crackseg::io {

struct StageOptions {
  std::filesystem::path dir;            // data.stage_dir ("" = $SLURM_TMPDIR, $TMPDIR, /tmp)
  std::function<bool()> stop_requested;  // polled between copy chunks (preemption signal)
  // The leader gives up when its folder, copy and check make no progress for this long (a
  // stuck file system: a mkdir, read or write that never returns); 0 = wait for ever. The run
  // passes dist.timeout_s.
  double stall_s = 0;
};

// What a staging did, for result.json ("staging").
struct StageRecord {
  std::filesystem::path source;  // the configured dataset
  std::filesystem::path path;    // this rank's copy
  uint64_t bytes = 0;
  double copy_s = 0;    // slowest node's copy + verification
  double verify_s = 0;  // of which re-reading the copy for its checksum (slowest node)
  std::string checksum;  // FNV-1a 64, as result.json's dataset checksum
  int nodes = 0;         // node-local copies made (one per node)
  int ranks_on_node = 0;
  [[nodiscard]] nlohmann::json to_json() const;
};

class NodeStage {
 public:
  // Copies `source` once per node and redirects dataset opens to the copy. Throws Error (on
  // every rank) when a node's copy fails, naming the file, folder and reason; a copy that
  // stalls for options.stall_s fails too (the leader's work runs on a thread it can give up
  // on; the given-up thread removes its folder if its call ever returns). When a stop
  // signal arrives during the copy, stopped() is true on every rank and nothing is redirected.
  NodeStage(const std::filesystem::path& source, const StageOptions& options, MPI_Comm world);
  ~NodeStage();
  NodeStage(const NodeStage&) = delete;
  NodeStage& operator=(const NodeStage&) = delete;

  [[nodiscard]] bool stopped() const { return stopped_; }
  [[nodiscard]] const StageRecord& record() const { return record_; }
  // Removes the copy and the redirect now (before an MPI_Abort, which unwinds nothing).
  void remove_now() noexcept;

 private:
  StageRecord record_;
  std::filesystem::path folder_;  // removed by the node leader
  bool leader_ = false;
  bool stopped_ = false;
  bool redirected_ = false;
};

// The path a dataset open of `path` should read: the staged copy while a NodeStage for it
// lives, else `path` itself.
[[nodiscard]] std::filesystem::path redirected_dataset(const std::filesystem::path& path);

// The staging folder's parent for a configured dir ("" = $SLURM_TMPDIR, $TMPDIR, /tmp).
[[nodiscard]] std::filesystem::path stage_base_dir(const std::filesystem::path& configured);

}  // namespace crackseg::io
