// Internal helpers shared by the loss implementations (not part of the public interface).
#pragma once
#include <cmath>
#include <cstdint>

#include "src/losses/parallel.hpp"
#include "src/tensor/tensor.hpp"

namespace crackseg::lossk {

// log(1 + e^x) without overflow or cancellation; log sigmoid(x) = -softplus(-x).
[[nodiscard]] inline double softplus(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::abs(x))); }
[[nodiscard]] inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// p = sigmoid(x), q = 1 - p, log p, log q from one exp and one log1p, exact in the tails
// (q is never computed as 1 - p).
struct LogSigmoid {
  double p, q, log_p, log_q;
};
[[nodiscard]] inline LogSigmoid log_sigmoid(double x) {
  const double e = std::exp(-std::abs(x)), l = std::log1p(e);
  const double big = 1.0 / (1.0 + e), small = e / (1.0 + e);
  return x >= 0 ? LogSigmoid{big, small, -l, -x - l} : LogSigmoid{small, big, x - l, -l};
}

// Element layout of a tensor as (n, c, s) strides, s = h*W + w the flattened spatial index.
// plain tensors of any rank are row-major, i.e. channels-first over dim 1.
struct Strides {
  int64_t C = 1, S = 1, sn = 0, sc = 0, ss = 0;
  bool channels_last = false;
};
[[nodiscard]] inline Strides strides_of(const Tensor& t) {
  Strides st;
  const auto& d = t.dims();
  st.C = d.size() >= 2 ? d[1] : 1;
  st.S = 1;
  for (std::size_t i = 2; i < d.size(); ++i) st.S *= d[i];
  st.channels_last = t.rank() == 4 && t.format() == Format::nhwc && st.C > 1;
  if (st.channels_last) {
    st.sc = 1;
    st.ss = st.C;
  } else {
    st.sc = st.S;
    st.ss = 1;
  }
  st.sn = st.C * st.S;
  return st;
}

// Maps a flat index of `a` (logits) to the flat index of the same logical element in `b`
// (target). Identity when the layouts coincide.
class IndexMap {
 public:
  IndexMap(const Tensor& a, const Tensor& b) : a_(strides_of(a)), b_(strides_of(b)) {
    same_ = a_.channels_last == b_.channels_last;
  }
  [[nodiscard]] bool identity() const { return same_; }
  [[nodiscard]] int64_t operator()(int64_t i) const {
    if (same_) return i;
    const int64_t n = i / a_.sn, r = i % a_.sn;
    const int64_t c = a_.channels_last ? r % a_.C : r / a_.S;
    const int64_t s = a_.channels_last ? r / a_.C : r % a_.S;
    return n * b_.sn + c * b_.sc + s * b_.ss;
  }

 private:
  Strides a_, b_;
  bool same_ = true;
};

// K sums over all elements: f(x, y, acc) with x the logit and y the target of one element.
template <int K, class F>
[[nodiscard]] std::array<double, K> reduce(const char* label, const Tensor& logits, const Tensor& target, F&& f) {
  const float* x = logits.data<float>();
  const float* y = target.data<float>();
  const IndexMap map(logits, target);
  return par::sum<K>(label, logits.numel(), [&](int64_t i, std::array<double, K>& acc) {
    f(static_cast<double>(x[i]), static_cast<double>(y[map(i)]), acc);
  });
}

// Gradient pass with K sums: g(x, y, acc) returns d(loss)/dx before scaling; dlogits[i] =
// scale * g. Returns the sums.
template <int K, class G>
std::array<double, K> grad_pass(const char* label, const Tensor& logits, const Tensor& target, Tensor& dlogits,
                                double scale, G&& g) {
  const float* x = logits.data<float>();
  const float* y = target.data<float>();
  float* dx = dlogits.data<float>();
  const IndexMap map(logits, target);
  return par::sum<K>(label, logits.numel(), [&](int64_t i, std::array<double, K>& acc) {
    dx[i] = static_cast<float>(scale * g(static_cast<double>(x[i]), static_cast<double>(y[map(i)]), acc));
  });
}

}  // namespace crackseg::lossk
