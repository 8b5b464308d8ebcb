// Softmax over channels + categorical cross-entropy (FlexUNet's 2-class setup; any C >= 2).
// logits (N, C, H, W) in any format; target either (N, C, H, W) class probabilities (one-hot)
// or (N, 1, H, W) class indices stored as float 0..C-1 (crack = class 1 for C = 2).
// loss = mean over the N*H*W pixels of -sum_c w_c t_c log softmax_c (class weights w, default
// 1); dlogits = (W softmax - w t) / P with W = sum_c w_c t_c.
#include <cmath>
#include <vector>

#include "src/core/error.hpp"
#include "src/losses/loss_common.hpp"
#include "src/losses/loss_impl.hpp"

namespace crackseg::lossimpl {
namespace {

class SoftmaxCe final : public Loss {
 public:
  explicit SoftmaxCe(std::vector<double> w) : w_(std::move(w)) {}
  [[nodiscard]] std::string name() const override { return "softmax_ce"; }

 protected:
  [[nodiscard]] bool accepts_class_index_target() const override { return true; }

  LossOutput compute(const Tensor& logits, const Tensor& target, Tensor& dlogits, double scale) override {
    const lossk::Strides ls = lossk::strides_of(logits), ts = lossk::strides_of(target);
    const int64_t C = ls.C, S = ls.S, N = logits.dim(0);
    if (C < 2)
      throw InputError("loss softmax_ce: logits need C >= 2 channels, got " + to_string(logits.dims()));
    if (!w_.empty() && static_cast<int64_t>(w_.size()) != C)
      throw InputError("loss softmax_ce: class_weights has " + std::to_string(w_.size()) + " values but the model has " +
                       std::to_string(C) + " classes");
    const auto weight = [&](int64_t c) { return w_.empty() ? 1.0 : w_[static_cast<std::size_t>(c)]; };
    const bool index_target = target.dims().size() >= 2 && target.dim(1) == 1;
    const int64_t pixels = N * S;
    const double inv_p = 1.0 / static_cast<double>(pixels);
    const float* x = logits.data<float>();
    const float* t = target.data<float>();
    float* dx = dlogits.data<float>();
    const auto s = par::sum<2>("loss::softmax_ce", pixels, [&](int64_t pix, std::array<double, 2>& acc) {
      const int64_t n = pix / S, sp = pix % S;
      const int64_t lbase = n * ls.sn + sp * ls.ss, tbase = n * ts.sn + sp * ts.ss;
      double zmax = -INFINITY;
      for (int64_t c = 0; c < C; ++c) zmax = std::max(zmax, static_cast<double>(x[lbase + c * ls.sc]));
      double z = 0;
      for (int64_t c = 0; c < C; ++c) z += std::exp(static_cast<double>(x[lbase + c * ls.sc]) - zmax);
      const double lse = zmax + std::log(z);
      int64_t label = -1;
      if (index_target) {
        const double v = t[tbase];
        label = static_cast<int64_t>(std::lround(v));
        if (!(label >= 0 && label < C && std::abs(v - static_cast<double>(label)) < 1e-6)) {
          acc[1] += 1;  // reported after the kernel (no throwing inside it)
          label = std::clamp<int64_t>(label, 0, C - 1);
        }
      }
      double wsum = 0;  // W = sum_c w_c t_c
      for (int64_t c = 0; c < C; ++c)
        wsum += weight(c) * (index_target ? (c == label ? 1.0 : 0.0) : static_cast<double>(t[tbase + c * ts.sc]));
      for (int64_t c = 0; c < C; ++c) {
        const double zc = static_cast<double>(x[lbase + c * ls.sc]);
        const double tc = index_target ? (c == label ? 1.0 : 0.0) : static_cast<double>(t[tbase + c * ts.sc]);
        acc[0] += weight(c) * tc * (lse - zc);
        dx[lbase + c * ls.sc] = static_cast<float>(scale * inv_p * (wsum * std::exp(zc - lse) - weight(c) * tc));
      }
    });
    if (s[1] > 0)
      throw InputError("loss softmax_ce: " + std::to_string(static_cast<int64_t>(s[1])) +
                       " target pixels are not class indices in [0, " + std::to_string(C - 1) + "]");
    return {s[0] * inv_p, {}};
  }

 private:
  std::vector<double> w_;
};

}  // namespace

std::unique_ptr<Loss> make_softmax_ce(std::vector<double> class_weights) {
  return std::make_unique<SoftmaxCe>(std::move(class_weights));
}

}  // namespace crackseg::lossimpl
