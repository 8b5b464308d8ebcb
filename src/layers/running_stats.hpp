// Batchnorm running statistics shared by the CPU backends (reference, oneDNN): the buffers,
// the last training batch's statistics and the PyTorch-style momentum update, applied at once
// or deferred (Layer::set_defer_running_stats: the trainer applies every micro-batch's
// statistics in global order).
//
// One value per channel (N*H*W = 1, e.g. a depth-7 Spiral-Net at 255 with micro_batch 1): the
// unbiased variance is undefined; every backend uses the biased one there (0), so the running
// variance decays towards 0 instead of becoming NaN (cuDNN's own update divides by N*H*W - 1;
// the CUDA backend applies this same rule).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace crackseg {

// The variance the running statistics take from a batch of `count` values per channel whose
// biased variance is `biased`: count / (count - 1) * biased, or `biased` for count <= 1.
[[nodiscard]] inline double unbiased_variance(double biased, double count) {
  return count > 1 ? biased * count / (count - 1) : biased;
}

class RunningStats {
 public:
  RunningStats(int64_t channels, float momentum) : momentum_(momentum) {
    mean_ = Tensor::zeros({channels});
    var_ = Tensor::empty({channels});
    var_.fill_(1.0f);
    batch_.assign(static_cast<std::size_t>(2 * channels), 0.0f);
  }
  [[nodiscard]] Tensor& mean() { return mean_; }
  [[nodiscard]] Tensor& var() { return var_; }
  [[nodiscard]] std::size_t size() const { return batch_.size(); }
  void set_defer(bool defer) { defer_ = defer; }

  // A training forward's statistics: per-channel mean and biased variance over `count` values.
  template <class M, class V>
  void record(const M* mean, const V* biased_var, double count) {
    const std::size_t C = batch_.size() / 2;
    for (std::size_t c = 0; c < C; ++c) {
      batch_[c] = static_cast<float>(mean[c]);
      batch_[C + c] = static_cast<float>(unbiased_variance(static_cast<double>(biased_var[c]), count));
    }
    if (!defer_) apply(batch_);
  }
  void read(std::span<float> dst) const { std::copy(batch_.begin(), batch_.end(), dst.begin()); }
  void apply(std::span<const float> s) {
    const std::size_t C = batch_.size() / 2;
    float* rm = mean_.data<float>();
    float* rv = var_.data<float>();
    const double m = momentum_;
    for (std::size_t c = 0; c < C; ++c) {
      rm[c] = static_cast<float>((1.0 - m) * rm[c] + m * s[c]);
      rv[c] = static_cast<float>((1.0 - m) * rv[c] + m * s[C + c]);
    }
  }

 private:
  float momentum_;
  bool defer_ = false;
  Tensor mean_, var_;
  std::vector<float> batch_;
};

}  // namespace crackseg
