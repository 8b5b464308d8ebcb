// Optimizer updates on the device, one fused kernel per parameter tensor. The formulas are
// PyTorch's (what the CPU optimizers in src/optim implement):
//   g = grad_scale * grad (+ weight_decay * w for adam / sgd with L2 decay)
//   adam:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//          w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//   adamw: w -= lr * weight_decay * w first, then adam without the L2 term
//   sgd:   buf = momentum * buf + g (buf = g on the first step); w -= lr * (nesterov ?
//          g + momentum * buf : buf)
// Per-element math in float (as the CPU kernels); bias corrections computed on the host in
// double. Each element is independent, so results are deterministic.
#pragma once
#include <cstdint>

namespace crackseg::cuda {

struct AdamArgs {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
  bool decoupled = false;  // adamw
  int64_t step = 1;        // t, starting at 1
  float grad_scale = 1.0f;
};
void adam_update(const AdamArgs& a, float* w, const float* grad, float* m, float* v, int64_t count);

struct SgdArgs {
  float lr = 1e-2f, momentum = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
  bool first_step = false;  // buf = g
  float grad_scale = 1.0f;
};
void sgd_update(const SgdArgs& a, float* w, const float* grad, float* buf, int64_t count);

// grad *= scale (averaging over micro-batches and ranks after the allreduce).
void scale_in_place(float* x, float scale, int64_t count);
// Sum of squares in double (gradient norm for logging and clipping), fixed reduction order.
[[nodiscard]] double sum_of_squares(const float* x, int64_t count);

}  // namespace crackseg::cuda
