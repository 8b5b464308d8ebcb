// Optimizer update kernels (see update_kernels.hpp). Built with -ffp-contract=off and
// -fno-math-errno (CMakeLists: same bits in every vector width, and std::sqrt vectorises).
#include "src/optim/update_kernels.hpp"

#include <cmath>

#include "src/core/target_clones.hpp"

namespace crackseg::optim_kernels {

// Two loops instead of a branch per element, so each vectorises.
CRACKSEG_CLONES void adam(const AdamCoef& c, float* __restrict w, const float* __restrict g, float* __restrict m,
                          float* __restrict v, int64_t begin, int64_t end) {
  const double b1 = c.b1, b2 = c.b2, eps = c.eps, lr = c.lr, wd = c.wd, step = c.step_size, sb = c.sqrt_bc2;
  if (c.decoupled) {
    for (int64_t k = begin; k < end; ++k) {
      const double wk = static_cast<double>(w[k]) - lr * wd * static_cast<double>(w[k]);
      const double gk = g[k];
      const double mk = b1 * static_cast<double>(m[k]) + (1 - b1) * gk;
      const double vk = b2 * static_cast<double>(v[k]) + (1 - b2) * gk * gk;
      m[k] = static_cast<float>(mk);
      v[k] = static_cast<float>(vk);
      w[k] = static_cast<float>(wk - step * mk / (std::sqrt(vk) / sb + eps));
    }
    return;
  }
  for (int64_t k = begin; k < end; ++k) {
    const double wk = w[k];
    const double gk = static_cast<double>(g[k]) + wd * wk;
    const double mk = b1 * static_cast<double>(m[k]) + (1 - b1) * gk;
    const double vk = b2 * static_cast<double>(v[k]) + (1 - b2) * gk * gk;
    m[k] = static_cast<float>(mk);
    v[k] = static_cast<float>(vk);
    w[k] = static_cast<float>(wk - step * mk / (std::sqrt(vk) / sb + eps));
  }
}

CRACKSEG_CLONES void sgd(const SgdCoef& c, float* __restrict w, const float* __restrict g, float* __restrict buf,
                         int64_t begin, int64_t end) {
  const double lr = c.lr, wd = c.wd, mu = c.mu, damp = c.damp;
  if (!buf) {
    for (int64_t k = begin; k < end; ++k) {
      const double gk = static_cast<double>(g[k]) + wd * static_cast<double>(w[k]);
      w[k] = static_cast<float>(static_cast<double>(w[k]) - lr * gk);
    }
    return;
  }
  for (int64_t k = begin; k < end; ++k) {
    double gk = static_cast<double>(g[k]) + wd * static_cast<double>(w[k]);
    const double bk = c.first ? gk : mu * static_cast<double>(buf[k]) + (1 - damp) * gk;
    buf[k] = static_cast<float>(bk);
    gk = c.nesterov ? gk + mu * bk : bk;
    w[k] = static_cast<float>(static_cast<double>(w[k]) - lr * gk);
  }
}

}  // namespace crackseg::optim_kernels
