// Batchnorm running statistics as a function of the global batch (issue 11): every
// micro-batch's per-channel batch statistics (Graph::read_batch_stats, 2C floats per BN
// layer) are filed under the micro-batch's global index; at the end of the step every rank
// gathers all of them and applies the momentum updates in increasing global index, so the
// running buffers are identical on every rank and equal to a 1-rank run's (given the same
// per-micro-batch statistics, which bitwise mode guarantees and fast mode gives to rounding).
// The model must have deferral on (Graph::defer_running_stats(true)).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "src/dist/communicator.hpp"
#include "src/graph/graph.hpp"

namespace crackseg::train {

class BatchStatsSync {
 public:
  BatchStatsSync(dist::Communicator& comm, Graph& master);
  // False for models without running statistics (nothing to gather).
  [[nodiscard]] bool active() const { return size_ > 0; }
  // Files `from`'s last training forward (a replica of master, or master itself) as
  // micro-batch `global_index` of this step.
  void stash(int64_t global_index, const Graph& from);
  // Gathers the step's micro-batches from every rank and applies them to master in order.
  void finish();

 private:
  dist::Communicator& comm_;
  Graph& master_;
  std::size_t size_;
  std::vector<int64_t> ids_;    // this step's micro-batches on this rank (global indices)
  std::vector<float> local_;    // their statistics, size_ floats each
  std::vector<int64_t> counts_, fcounts_, order_;
  std::vector<std::size_t> slot_of_;
  std::shared_ptr<std::vector<float>> gathered_;  // every rank's statistics (keepalive of the gather)
};

}  // namespace crackseg::train
