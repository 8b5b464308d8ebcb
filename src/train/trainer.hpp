// The training loop (DESIGN.md "Core decisions" 4-6): data-parallel over the ranks of a
// Communicator, exact resume from checkpoints, preemption by signal, validation per epoch,
// provenance in result.json.
//
// One optimizer step = global batch B = R ranks x m micro-batch x a accumulation steps. Each
// rank runs forward/backward on its a micro-batches (the sharding rule of io::train_shard),
// the gradient sync sums the B/m micro-batch gradients over ranks (bucketed overlap in
// `fast` mode, a fixed global micro-batch order in `bitwise` mode) and divides by B/m, so the
// update is the mean of the per-micro-batch gradients whatever R is.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "src/config/config.hpp"
#include "src/core/error.hpp"

namespace crackseg::dist {
class Communicator;
}

namespace crackseg::train {

// NaN/Inf loss or gradient: the message names the step and the last good checkpoint.
class DivergedError : public Error {
 public:
  using Error::Error;
};

enum class TrainStatus { completed, early_stopped, preempted };

struct TrainOptions {
  bool resume = true;        // continue from <out>/checkpoint.h5 when it exists
  bool quiet = false;        // no progress lines
  // Testing preemption: raise SIGUSR1 on rank `raise_signal_rank` right after global step
  // `raise_signal_at_step` completes (the real handler and the ranks' agreement then run).
  int64_t raise_signal_at_step = -1;
  int raise_signal_rank = 0;
  // Extra top-level entries of result.json from the caller (e.g. "staging" from data.stage).
  nlohmann::json extra_result = nlohmann::json::object();
};

struct TrainOutcome {
  TrainStatus status = TrainStatus::completed;
  nlohmann::json result;     // what result.json holds (rank 0; others get the metrics only)
  // FNV-1a over this rank's parameter values and buffers (batchnorm running statistics), in
  // graph order (host models; 0 for device models): equal on every rank of a run.
  uint64_t state_digest = 0;
};

[[nodiscard]] TrainOutcome run_training(const config::ResolvedConfig& cfg, dist::Communicator& comm,
                                        const TrainOptions& opt = {});

}  // namespace crackseg::train
