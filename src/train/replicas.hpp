// Micro-batch-parallel execution (issue 11, train.parallel = "batch"): the micro-batch is the
// unit of arithmetic. A rank with T threads holds T replicas of the model, each instantiated
// on its own backend instance (own oneDNN engine, stream and scratchpad), and runs up to T
// micro-batches at once, one per thread. Inside a worker thread the OpenMP thread count is 1,
// so oneDNN plans and runs single-threaded primitives and the project's own OpenMP loops run
// inline: a micro-batch's gradient and batchnorm statistics are the same bits whatever T is.
// The gradient sync then sums micro-batch gradients in global order (bitwise mode), so a
// bitwise run depends on neither the rank count nor the threads per rank.
//
// The master model (the trainer's) keeps the parameters the optimizer updates, the running
// statistics, and does evaluation; copy_params_from() refreshes the replicas after every
// optimizer step. Memory: T copies of the activations (one per micro-batch in flight) plus
// T + 1 copies of the weights.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "src/graph/layer.hpp"
#include "src/models/model.hpp"
#include "src/train/batches.hpp"
#include "src/train/train_device.hpp"

namespace crackseg::train {

class Replicas {
 public:
  // count >= 1 replicas of the model built from `model_cfg` on backends named `backend`
  // (host backends only), each with its own loss from make_loss().
  // `precision`: train.precision of every replica's backend (Backend::set_precision);
  // `conv_algorithm`: train.conv_algorithm (Backend::set_conv_algorithm).
  Replicas(int count, const std::string& backend, const nlohmann::json& model_cfg, uint64_t init_seed,
           const std::function<std::unique_ptr<StepLoss>()>& make_loss, const std::string& precision = "fp32",
           const std::string& conv_algorithm = "direct");
  ~Replicas();
  Replicas(const Replicas&) = delete;
  Replicas& operator=(const Replicas&) = delete;

  [[nodiscard]] int size() const { return static_cast<int>(slots_.size()); }
  // Backend::precision_summary of replica 0 (all replicas are built alike).
  [[nodiscard]] std::string precision_summary() const;
  [[nodiscard]] Batch& batch(int j);
  [[nodiscard]] Graph& graph(int j);
  [[nodiscard]] std::vector<Param*>& params(int j);
  // Every replica takes the master model's parameter values (Graph::params() of the master:
  // same order and shapes).
  void copy_params_from(std::span<Param* const> master);
  // Forward, loss (scaled by grad_scale) and backward of replicas 0..n-1 on their batches,
  // replicas in parallel (one thread each). Returns each replica's loss value.
  [[nodiscard]] std::vector<double> run(int n, uint64_t seed, uint64_t epoch, double grad_scale);

 private:
  struct Slot;
  std::vector<std::unique_ptr<Slot>> slots_;
};

}  // namespace crackseg::train
