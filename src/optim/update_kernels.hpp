// Element-wise optimizer updates over [begin, end) of one parameter, in double as the update
// rules in optimizer.cpp state them. Compiled for AVX-512, AVX2 and the baseline
// (target_clones) with FMA contraction off, so every variant gives the same bits: the only
// operations are IEEE +, -, *, / and sqrt, each exactly rounded in any vector width.
#pragma once
#include <cstdint>

namespace crackseg::optim_kernels {

struct AdamCoef {
  double b1, b2, eps, lr, wd, step_size, sqrt_bc2;
  bool decoupled;  // AdamW: decay the weight; Adam: add wd * w to the gradient
};
void adam(const AdamCoef& c, float* w, const float* g, float* m, float* v, int64_t begin, int64_t end);

struct SgdCoef {
  double lr, wd, mu, damp;
  bool first, nesterov;
};
// buf == nullptr: plain SGD (no momentum).
void sgd(const SgdCoef& c, float* w, const float* g, float* buf, int64_t begin, int64_t end);

}  // namespace crackseg::optim_kernels
