// Per-element sigmoid losses: bce, weighted_bce, balanced_bce, focal, and the pseudo-F1
// gradient. p = sigmoid(x), q = 1 - p and their logs come from lossk::log_sigmoid.
#include <cmath>

#include "src/losses/loss_common.hpp"
#include "src/losses/loss_impl.hpp"

namespace crackseg::lossimpl {
namespace {

// Class-weighted BCE: l = -(w1 y log p + w0 (1-y) log(1-p)); dl/dx = w1 y (p-1) + w0 (1-y) p.
// Returns {sum l, sum of plain bce} over the elements and writes scale/M * dl/dx.
std::array<double, 2> weighted_bce_pass(const char* label, const Tensor& logits, const Tensor& target,
                                        Tensor& dlogits, double scale, double w0, double w1) {
  const double inv_m = 1.0 / static_cast<double>(logits.numel());
  return lossk::grad_pass<2>(label, logits, target, dlogits, scale * inv_m,
                             [=](double x, double y, std::array<double, 2>& acc) {
                               const auto s = lossk::log_sigmoid(x);
                               acc[0] -= w1 * y * s.log_p + w0 * (1 - y) * s.log_q;
                               acc[1] -= y * s.log_p + (1 - y) * s.log_q;
                               return -w1 * y * s.q + w0 * (1 - y) * s.p;
                             });
}

class Bce final : public Loss {
 public:
  [[nodiscard]] std::string name() const override { return "bce"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const auto s = weighted_bce_pass("loss::bce", logits, target, dlogits, scale, 1.0, 1.0);
    const double loss = s[0] / static_cast<double>(logits.numel());
    return {loss, {{"bce", loss}}};
  }
};

class WeightedBce final : public Loss {
 public:
  WeightedBce(double w0, double w1) : w0_(w0), w1_(w1) {}
  [[nodiscard]] std::string name() const override { return "weighted_bce"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const auto s = weighted_bce_pass("loss::weighted_bce", logits, target, dlogits, scale, w0_, w1_);
    const double m = static_cast<double>(logits.numel());
    return {s[0] / m, {{"bce", s[1] / m}, {"w0", w0_}, {"w1", w1_}}};
  }

 private:
  double w0_, w1_;
};

class BalancedBce final : public Loss {
 public:
  [[nodiscard]] std::string name() const override { return "balanced_bce"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const double m = static_cast<double>(logits.numel());
    const auto n1 = lossk::reduce<1>("loss::balanced_bce_stats", logits, target,
                                     [](double, double y, std::array<double, 1>& acc) { acc[0] += y; })[0];
    double w0 = 1.0, w1 = 1.0;
    if (n1 > 0 && n1 < m) {  // both classes present; otherwise plain BCE (documented)
      w1 = m / (2.0 * n1);
      w0 = m / (2.0 * (m - n1));
    }
    const auto s = weighted_bce_pass("loss::balanced_bce", logits, target, dlogits, scale, w0, w1);
    return {s[0] / m, {{"bce", s[1] / m}, {"w0", w0}, {"w1", w1}}};
  }
};

// Focal loss (Lin et al. 2017): l = -a y (1-p)^g log p - (1-a)(1-y) p^g log(1-p).
//   d/dx [-(1-p)^g log p]   = (1-p)^g (g p log p - (1-p))
//   d/dx [-p^g log(1-p)]    = p^g (p - g (1-p) log(1-p))
class Focal final : public Loss {
 public:
  Focal(double gamma, double alpha) : gamma_(gamma), alpha_(alpha) {}
  [[nodiscard]] std::string name() const override { return "focal"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const double m = static_cast<double>(logits.numel());
    const double g = gamma_;
    const double a1 = alpha_ < 0 ? 1.0 : alpha_, a0 = alpha_ < 0 ? 1.0 : 1.0 - alpha_;
    const auto s = lossk::grad_pass<2>(
        "loss::focal", logits, target, dlogits, scale / m, [=](double x, double y, std::array<double, 2>& acc) {
          const auto [p, q, log_p, log_q] = lossk::log_sigmoid(x);
          // gamma = 2 (the default) by multiplication: pow dominated the kernel's time.
          const double qg = g == 2.0 ? q * q : std::pow(q, g), pg = g == 2.0 ? p * p : std::pow(p, g);
          acc[0] += -a1 * y * qg * log_p - a0 * (1 - y) * pg * log_q;
          acc[1] += -y * log_p - (1 - y) * log_q;
          return a1 * y * qg * (g * p * log_p - q) + a0 * (1 - y) * pg * (p - g * q * log_q);
        });
    return {s[0] / m, {{"bce", s[1] / m}}};
  }

 private:
  double gamma_, alpha_;
};

// Pseudo-F1 gradient, Kobayashi eq. 11 (see loss.hpp for the weights). No loss behind it.
class PseudoF1 final : public Loss {
 public:
  [[nodiscard]] std::string name() const override { return "pseudo_f1"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const double m = static_cast<double>(logits.numel());
    // sum_pos(p) = sum(p y), sum(p), N1 = sum(y), and the BCE sum for the log.
    const auto st = lossk::reduce<4>("loss::pseudo_f1_stats", logits, target,
                                     [](double x, double y, std::array<double, 4>& acc) {
                                       const auto s = lossk::log_sigmoid(x);
                                       acc[0] += s.p * y;
                                       acc[1] += s.p;
                                       acc[2] += y;
                                       acc[3] -= y * s.log_p + (1 - y) * s.log_q;
                                     });
    const double s_pos = st[0], s_all = st[1], n1 = st[2];
    const double denom = n1 + s_all;
    const double w0 = denom > 0 ? 1.0 / denom : 0.0;
    const double w1 = n1 > 0 ? 1.0 / std::max(s_pos, 1e-30) - w0 : 0.0;
    (void)lossk::grad_pass<0>("loss::pseudo_f1", logits, target, dlogits, scale,
                              [=](double x, double y, std::array<double, 0>&) {
                                const auto s = lossk::log_sigmoid(x);
                                return -y * s.q * w1 + (1 - y) * s.p * w0;
                              });
    const double bce = st[3] / m;
    const double f1 = denom > 0 ? 2.0 * s_pos / denom : 1.0;
    return {bce, {{"bce", bce}, {"f1", f1}}};
  }
};

}  // namespace

std::unique_ptr<Loss> make_bce() { return std::make_unique<Bce>(); }
std::unique_ptr<Loss> make_weighted_bce(double w0, double w1) { return std::make_unique<WeightedBce>(w0, w1); }
std::unique_ptr<Loss> make_balanced_bce() { return std::make_unique<BalancedBce>(); }
std::unique_ptr<Loss> make_focal(double gamma, double alpha) { return std::make_unique<Focal>(gamma, alpha); }
std::unique_ptr<Loss> make_pseudo_f1() { return std::make_unique<PseudoF1>(); }

}  // namespace crackseg::lossimpl
