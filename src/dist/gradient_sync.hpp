// Gradient summation across ranks, in one of two modes (train.determinism):
//
// fast: parameters are grouped into buckets of about `bucket_bytes` in reverse parameter
//   order (backward produces the last layers' gradients first). The trainer calls
//   mark_ready(i) when params[i]'s gradient is final for the step (after the last
//   micro-batch's backward through its layer); when a bucket's last gradient is ready, the
//   bucket is packed and a non-blocking allreduce starts, overlapping with the rest of the
//   backward. finish() starts what is left, waits, and writes the sums into the grads. The
//   summation order inside MPI depends on the rank count, so results agree across rank
//   counts only to rounding.
//
// bitwise: rank-count invariant to the last bit. After each micro-batch's backward the
//   trainer calls stash_micro_batch(g), g = the micro-batch's global index in the step
//   (0..M-1, M = ranks x accumulation steps); that copies the grads (which must hold exactly
//   that micro-batch's gradient) and zeroes them. finish() gathers every micro-batch's
//   gradient on every rank (Allgatherv per bucket, the next bucket's gather in flight while
//   the current one is summed) and sums them per element in double, in increasing global
//   index g from 0.0, rounding to float once:  grad = float(((0.0 + d_0) + d_1) + ... + d_{M-1}).
//   The stored numbers and the order of additions are the same whatever the rank count, so
//   1, 2 and 4 ranks give identical bits (given per-micro-batch gradients that are).
//   Cost: each rank receives (M - a) x P floats per step (a = its own micro-batches, P =
//   parameter count) instead of ring allreduce's ~2P, i.e. ~M/2 times the traffic, memory
//   a x P for the stash plus 2 x M x bucket for the gathers, and M x P double additions per
//   rank. Fine for a few ranks and modest models; use fast mode at scale.
//
// Both modes sum; the trainer scales the loss (1 / global batch) so the sum is the mean.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/dist/communicator.hpp"
#include "src/graph/layer.hpp"

namespace crackseg::dist {

enum class Determinism { fast, bitwise };
[[nodiscard]] Determinism parse_determinism(const std::string& s);  // "fast" | "bitwise"

struct GradientSyncOptions {
  Determinism mode = Determinism::fast;
  std::size_t bucket_bytes = std::size_t{4} << 20;
};

// Per-step numbers for the benchmark (fraction of the step spent waiting on communication).
struct SyncStats {
  double finish_s = 0;         // time inside finish(), i.e. not overlapped with backward
  std::size_t bytes_sent = 0;  // bytes this rank contributed to collectives
  std::size_t buckets = 0;
};

class GradientSync {
 public:
  // params: the model's parameters in their fixed order (grads f32 on the host, same dims
  // as the values). They must stay alive and in place as long as this object.
  GradientSync(Communicator& comm, std::vector<Param*> params, GradientSyncOptions options = {});
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  [[nodiscard]] Determinism mode() const { return options_.mode; }
  // Buckets in launch order; each lists parameter indices (descending).
  [[nodiscard]] const std::vector<std::vector<std::size_t>>& buckets() const { return bucket_params_; }

  // fast mode: params[index]'s gradient is final for this step.
  void mark_ready(std::size_t index);
  // bitwise mode: file the current grads as micro-batch `global_index` of this step and
  // zero them.
  void stash_micro_batch(int64_t global_index);
  // Same, from another parameter list of the same shapes (a model replica that computed the
  // micro-batch: the trainer's micro-batch-parallel bitwise mode); zeroes those grads.
  void stash_micro_batch(int64_t global_index, std::span<Param* const> from);
  // Completes the step: every rank's grads hold the global sum. Resets for the next step.
  void finish();

  [[nodiscard]] const SyncStats& last_stats() const { return stats_; }
  // fast mode: buckets whose allreduce has started this step (packed and posted; on one rank
  // nothing is posted but the bookkeeping is the same).
  [[nodiscard]] std::size_t started_buckets() const;

 private:
  struct Bucket;
  void start_bucket(std::size_t b);
  void finish_fast();
  void finish_bitwise();

  Communicator& comm_;
  std::vector<Param*> params_;
  GradientSyncOptions options_;
  std::vector<std::vector<std::size_t>> bucket_params_;
  std::vector<std::unique_ptr<Bucket>> buckets_;
  std::vector<std::size_t> bucket_of_;  // param index -> bucket
  std::vector<bool> ready_;
  std::vector<int64_t> stashed_;        // bitwise: global indices of this rank's micro-batches
  SyncStats stats_;
  std::size_t step_bytes_ = 0;
};

}  // namespace crackseg::dist
