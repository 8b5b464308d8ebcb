// Optimizers on the device with src/optim's update rules (optimizer.hpp), per-element
// arithmetic in double and stored as float as the CPU does, one fused kernel per parameter
// tensor. DeviceOptimizer mirrors crackseg::Optimizer's API (step, zero_grad, lr, step
// count, state for checkpoints) for parameters whose values and grads live on the device;
// the trainer parses [optim] with parse_optim_config and hands the OptimConfig over.
// Differences from the CPU bits: nvcc contracts a*b+c into FMAs, so results agree to a few
// ulps, not bit for bit.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/graph/layer.hpp"
#include "src/optim/optimizer.hpp"

namespace crackseg::cuda {

struct AdamArgs {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool decoupled = false;  // adamw
  int64_t step = 1;        // t, starting at 1
};
void adam_update(const AdamArgs& a, float* w, const float* grad, float* m, float* v, int64_t count);

struct SgdArgs {
  double lr = 1e-2, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = false;  // buf = g
};
// buf may be null when momentum == 0.
void sgd_update(const SgdArgs& a, float* w, const float* grad, float* buf, int64_t count);

void scale_in_place(float* x, double scale, int64_t count);      // x = float(double(x) * scale)
void clamp_in_place(float* x, float max_abs, int64_t count);     // clip_value
// Sum of squares in double (gradient norm), fixed reduction order; blocks the host.
[[nodiscard]] double sum_of_squares(const float* x, int64_t count);
// Sum over arrays of sum_of_squares(xs[i], counts[i]), the same numbers in the same order,
// with one device array of partial sums and ONE read back (one host round trip per
// optimizer step instead of one per parameter tensor).
[[nodiscard]] double sum_of_squares_all(std::span<const float* const> xs, std::span<const int64_t> counts);

class DeviceOptimizer {
 public:
  DeviceOptimizer(OptimConfig cfg, std::vector<Param*> params);
  // Clips per config, updates every parameter, counts the step; a non-finite gradient norm
  // skips everything (applied = false), as crackseg::Optimizer does.
  StepInfo step();
  void zero_grad();
  [[nodiscard]] double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }
  [[nodiscard]] int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  [[nodiscard]] const OptimConfig& config() const { return cfg_; }
  // "<param>.exp_avg", "<param>.exp_avg_sq" or "<param>.momentum_buffer": device tensors.
  [[nodiscard]] std::vector<std::pair<std::string, Tensor*>> state();

 private:
  OptimConfig cfg_;
  std::vector<Param*> params_;
  double lr_;
  int64_t step_ = 0;
  std::vector<std::pair<std::string, Tensor>> state_;  // per param: m, v (adam) or buf (sgd)
};

}  // namespace crackseg::cuda
