// Losses over micro-batch statistics: soft Dice, BCE + Dice, and -log F1 (Kobayashi eq. 6).
// All three need I = sum(p y), P = sum(p), Y = sum(y) over the whole micro-batch first, then a
// gradient pass: d/dx_i = dL/dp_i * p_i (1 - p_i).
#include <cmath>

#include "src/losses/loss_common.hpp"
#include "src/losses/loss_impl.hpp"

namespace crackseg::lossimpl {
namespace {

struct OverlapStats {
  double inter = 0, sum_p = 0, sum_y = 0, bce_sum = 0;
};

OverlapStats overlap_stats(const char* label, const Tensor& logits, const Tensor& target) {
  const auto s = lossk::reduce<4>(label, logits, target, [](double x, double y, std::array<double, 4>& acc) {
    const auto s = lossk::log_sigmoid(x);
    acc[0] += s.p * y;
    acc[1] += s.p;
    acc[2] += y;
    acc[3] -= y * s.log_p + (1 - y) * s.log_q;
  });
  return {s[0], s[1], s[2], s[3]};
}

// Dice = (2I + s) / (P + Y + s); L = 1 - Dice; dL/dp_i = -(2 y_i (P+Y+s) - (2I+s)) / (P+Y+s)^2.
// bce_weight > 0 adds bce_weight * mean BCE (gradient (p - y)/M).
LossOutput dice_family(const char* label, const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale,
                       double smooth, double bce_weight, double dice_weight) {
  const OverlapStats st = overlap_stats(label, logits, target);
  const double m = static_cast<double>(logits.numel());
  const double num = 2 * st.inter + smooth, den = st.sum_p + st.sum_y + smooth;
  const double dice = den > 0 ? num / den : 1.0;
  const double inv_den2 = den > 0 ? 1.0 / (den * den) : 0.0;
  (void)lossk::grad_pass<0>(label, logits, target, dlogits, scale, [=](double x, double y, std::array<double, 0>&) {
    const auto s = lossk::log_sigmoid(x);
    const double dl_dp = -(2 * y * den - num) * inv_den2;
    return dice_weight * dl_dp * s.p * s.q + bce_weight * (s.p - y) / m;
  });
  const double bce = st.bce_sum / m;
  return {bce_weight * bce + dice_weight * (1 - dice), {{"bce", bce}, {"dice", dice}}};
}

class Dice final : public Loss {
 public:
  explicit Dice(double smooth) : smooth_(smooth) {}
  [[nodiscard]] std::string name() const override { return "dice"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    return dice_family("loss::dice", logits, target, dlogits, scale, smooth_, 0.0, 1.0);
  }

 private:
  double smooth_;
};

class BceDice final : public Loss {
 public:
  BceDice(double smooth, double bw, double dw) : smooth_(smooth), bw_(bw), dw_(dw) {}
  [[nodiscard]] std::string name() const override { return "bce_dice"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    return dice_family("loss::bce_dice", logits, target, dlogits, scale, smooth_, bw_, dw_);
  }

 private:
  double smooth_, bw_, dw_;
};

// F1 = (2 TP + eps) / (2 TP + FP + FN + eps), 2 TP + FP + FN = P + Y. L = -log F1 =
// log(P + Y + eps) - log(2I + eps); dL/dp_i = 1/(P + Y + eps) - 2 y_i / (2I + eps).
class F1Loss final : public Loss {
 public:
  explicit F1Loss(double eps) : eps_(eps) {}
  [[nodiscard]] std::string name() const override { return "f1"; }

 protected:
  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const OverlapStats st = overlap_stats("loss::f1", logits, target);
    const double num = 2 * st.inter + eps_, den = st.sum_p + st.sum_y + eps_;
    // Both are sums of non-negative terms plus eps > 0 (make_loss checks), so never zero
    // unless every p underflows and eps == 0; guard anyway so no NaN can escape.
    const double inv_num = num > 0 ? 1.0 / num : 0.0, inv_den = den > 0 ? 1.0 / den : 0.0;
    (void)lossk::grad_pass<0>("loss::f1", logits, target, dlogits, scale,
                              [=](double x, double y, std::array<double, 0>&) {
                                const auto s = lossk::log_sigmoid(x);
                                return (inv_den - 2 * y * inv_num) * s.p * s.q;
                              });
    const double f1 = (num > 0 && den > 0) ? num / den : 0.0;
    const double loss = (num > 0 && den > 0) ? std::log(den) - std::log(num) : 0.0;
    return {loss, {{"bce", st.bce_sum / static_cast<double>(logits.numel())}, {"f1", f1}}};
  }

 private:
  double eps_;
};

}  // namespace

std::unique_ptr<Loss> make_dice(double smooth) { return std::make_unique<Dice>(smooth); }
std::unique_ptr<Loss> make_bce_dice(double smooth, double bw, double dw) {
  return std::make_unique<BceDice>(smooth, bw, dw);
}
std::unique_ptr<Loss> make_f1(double eps) { return std::make_unique<F1Loss>(eps); }

}  // namespace crackseg::lossimpl
