// Optimizers over a model's parameters: adam, adamw, sgd (momentum, optional nesterov), with
// gradient clipping, built from the [optim] config section:
//
//   [optim] name = "adam"  lr = 1e-3  betas = [0.9, 0.999]  eps = 1e-8  weight_decay = 0
//           clip_norm = 0  clip_value = 0          (sgd: momentum = 0.9, dampening = 0, nesterov)
//
//   auto opt = make_optimizer(cfg["optim"], model.params());
//   opt->zero_grad();  ...backward...;  StepInfo s = opt->step();
//
// Update rules (PyTorch's, so results compare with the papers' code):
//   adam   g += wd * w (decay params only);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//          w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//   adamw  as adam without the L2 term; first w -= lr * wd * w (decay params only)
//   sgd    g += wd * w;  buf = g at the first step, else buf = mu buf + (1 - dampening) g;
//          g = nesterov ? g + mu buf : buf;  w -= lr * g       (mu = 0: plain SGD, no buffer)
// Param::decay == false (biases, batchnorm) exempts a parameter from weight decay.
// Per-element arithmetic is in double, stored as float; every kernel is elementwise, so the
// result does not depend on the thread count.
//
// Clipping, before the update, in this order (Keras's): clip_norm > 0 scales all gradients by
// clip_norm / (norm + 1e-6) when the global L2 norm exceeds clip_norm (PyTorch's
// clip_grad_norm_); clip_value > 0 clamps each gradient element to [-clip_value, clip_value].
// The global norm is computed in double in a fixed order (parameters in order, elements in
// fixed chunks), so it is the same bits on every rank and thread count.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/graph/layer.hpp"

namespace crackseg {

struct OptimConfig {
  std::string name = "adam";  // adam | adamw | sgd
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;
  double momentum = 0.9, dampening = 0.0;
  bool nesterov = false;
  double clip_norm = 0.0, clip_value = 0.0;  // 0 = off
};

// Validates [optim]: unknown keys -> InputError naming the nearest valid key; ranges checked.
[[nodiscard]] OptimConfig parse_optim_config(const nlohmann::json& optim_section);

struct StepInfo {
  double grad_norm = 0.0;  // global L2 norm of the gradients before clipping
  bool applied = false;    // false when the norm was not finite: weights and state untouched
};

class Optimizer {
 public:
  Optimizer(OptimConfig cfg, std::vector<Param*> params);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Clips (per config) and updates every parameter, then counts the step. A NaN/Inf gradient
  // norm skips everything (applied = false, step count unchanged) so the caller can stop the
  // run with the weights of the last good step.
  StepInfo step();
  void zero_grad();

  [[nodiscard]] double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }  // schedules call this
  [[nodiscard]] int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }  // checkpoint restore
  [[nodiscard]] const OptimConfig& config() const { return cfg_; }
  [[nodiscard]] const std::vector<Param*>& params() const { return params_; }

  // Moment tensors named "<param name>.<state>" (exp_avg, exp_avg_sq, momentum_buffer), plain
  // f32 with the parameter's dims, in a fixed order; a checkpoint writes and restores them in
  // place together with step_count() and lr().
  [[nodiscard]] std::vector<std::pair<std::string, Tensor*>> state();

 protected:
  // Updates one parameter (index i) with step count t = step_count() + 1.
  virtual void update(std::size_t i, Param& p, int64_t t) = 0;
  // Creates a zero state tensor shaped like parameter i, registered under `suffix`.
  Tensor& add_state(std::size_t i, const std::string& suffix);

  OptimConfig cfg_;
  std::vector<Param*> params_;
  double lr_;
  int64_t step_ = 0;

 private:
  std::vector<std::pair<std::string, Tensor>> state_;
};

[[nodiscard]] std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& optim_section,
                                                        std::vector<Param*> params);
[[nodiscard]] std::unique_ptr<Optimizer> make_optimizer(const OptimConfig& cfg, std::vector<Param*> params);

// Global L2 norm of all gradients, in double, deterministic order.
[[nodiscard]] double global_grad_norm(std::span<Param* const> params);
// Scales gradients so the global norm is at most max_norm (coefficient max_norm/(norm+1e-6));
// returns the norm before clipping.
double clip_grad_norm(std::span<Param* const> params, double max_norm);
void clip_grad_value(std::span<Param* const> params, double max_abs);

}  // namespace crackseg
