// Reference maxpool2d (first maximum in window order wins, padding never wins) and
// batchnorm2d (per-call batch statistics in training, running statistics in eval).
#include <cmath>
#include <limits>
#include <vector>

#include "src/layers/running_stats.hpp"
#include "kernels/reference/ref_layers.hpp"

namespace crackseg::reference {
namespace {

class MaxPool2d final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}

  // Offset in `x` of the window maximum for output (n, c, oy, ox).
  int64_t argmax(const Tensor& x, int64_t n, int64_t c, int64_t oy, int64_t ox) const {
    const auto& s = as<MaxPool2dSpec>();
    const float* xd = x.data<float>();
    float best = -std::numeric_limits<float>::infinity();
    int64_t at = -1;
    for (int64_t ky = 0; ky < s.kernel; ++ky)
      for (int64_t kx = 0; kx < s.kernel; ++kx) {
        const int64_t iy = oy * s.stride - s.padding + ky, ix = ox * s.stride - s.padding + kx;
        if (iy < 0 || iy >= x.h() || ix < 0 || ix >= x.w()) continue;
        const int64_t off = x.offset(n, c, iy, ix);
        if (at < 0 || xd[off] > best) best = xd[off], at = off;
      }
    return at;
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const Tensor& x = *in[0];
    for (int64_t n = 0; n < out.n(); ++n)
      for (int64_t c = 0; c < out.c(); ++c)
        for (int64_t oy = 0; oy < out.h(); ++oy)
          for (int64_t ox = 0; ox < out.w(); ++ox) {
            const int64_t at = argmax(x, n, c, oy, ox);
            out.at(n, c, oy, ox) = at < 0 ? 0.0f : x.data<float>()[at];
          }
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    din[0]->zero_();
    float* dx = din[0]->data<float>();
    const Tensor& x = *in[0];
    for (int64_t n = 0; n < dout.n(); ++n)
      for (int64_t c = 0; c < dout.c(); ++c)
        for (int64_t oy = 0; oy < dout.h(); ++oy)
          for (int64_t ox = 0; ox < dout.w(); ++ox) {
            const int64_t at = argmax(x, n, c, oy, ox);
            // x and din share dims and format, so the offset carries over.
            if (at >= 0) dx[at] += dout.at(n, c, oy, ox);
          }
  }
};

class BatchNorm2d final : public LayerBase {
 public:
  BatchNorm2d(const LayerSpec& s, const std::string& name)
      : LayerBase(s, name), stats_(std::get<BatchNorm2dSpec>(s).channels, std::get<BatchNorm2dSpec>(s).momentum) {}
  void plan(std::span<const Dims>) override {}
  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    return {{name_ + ".running_mean", &stats_.mean()}, {name_ + ".running_var", &stats_.var()}};
  }
  std::size_t batch_stats_size() const override { return stats_.size(); }
  void set_defer_running_stats(bool defer) override { stats_.set_defer(defer); }
  void read_batch_stats(std::span<float> dst) const override { stats_.read(dst); }
  void apply_batch_stats(std::span<const float> src) override { stats_.apply(src); }

  // Per-channel mean and biased variance of x over (N, H, W), in double.
  static void stats(const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
    const int64_t C = x.c(), M = x.n() * x.h() * x.w();
    mean.assign(C, 0.0);
    var.assign(C, 0.0);
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t n = 0; n < x.n(); ++n)
        for (int64_t h = 0; h < x.h(); ++h)
          for (int64_t w = 0; w < x.w(); ++w) s += x.at(n, c, h, w);
      mean[c] = s / M;
      double v = 0;
      for (int64_t n = 0; n < x.n(); ++n)
        for (int64_t h = 0; h < x.h(); ++h)
          for (int64_t w = 0; w < x.w(); ++w) v += (x.at(n, c, h, w) - mean[c]) * (x.at(n, c, h, w) - mean[c]);
      var[c] = v / M;
    }
  }

  void used_stats(const StepContext& ctx, const Tensor& x, std::vector<double>& mean, std::vector<double>& var) {
    if (ctx.training) return stats(x, mean, var);
    mean.assign(stats_.mean().span<float>().begin(), stats_.mean().span<float>().end());
    var.assign(stats_.var().span<float>().begin(), stats_.var().span<float>().end());
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& s = as<BatchNorm2dSpec>();
    const Tensor& x = *in[0];
    std::vector<double> mean, var;
    used_stats(ctx, x, mean, var);
    const float* g = params_[0].value.data<float>();
    const float* b = params_[1].value.data<float>();
    for (int64_t c = 0; c < x.c(); ++c) {
      const double inv = 1.0 / std::sqrt(var[c] + s.eps);
      for (int64_t n = 0; n < x.n(); ++n)
        for (int64_t h = 0; h < x.h(); ++h)
          for (int64_t w = 0; w < x.w(); ++w)
            out.at(n, c, h, w) = static_cast<float>((x.at(n, c, h, w) - mean[c]) * inv * g[c] + b[c]);
    }
    // PyTorch: the running variance takes the unbiased batch variance.
    if (ctx.training) stats_.record(mean.data(), var.data(), static_cast<double>(x.n() * x.h() * x.w()));
  }

  void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& s = as<BatchNorm2dSpec>();
    const Tensor& x = *in[0];
    std::vector<double> mean, var;
    used_stats(ctx, x, mean, var);
    const float* g = params_[0].value.data<float>();
    float* dg = params_[0].grad.data<float>();
    float* db = params_[1].grad.data<float>();
    const double M = static_cast<double>(x.n() * x.h() * x.w());
    for (int64_t c = 0; c < x.c(); ++c) {
      const double inv = 1.0 / std::sqrt(var[c] + s.eps);
      double sum_dy = 0, sum_dy_xhat = 0;
      for (int64_t n = 0; n < x.n(); ++n)
        for (int64_t h = 0; h < x.h(); ++h)
          for (int64_t w = 0; w < x.w(); ++w) {
            const double dy = dout.at(n, c, h, w);
            sum_dy += dy;
            sum_dy_xhat += dy * (x.at(n, c, h, w) - mean[c]) * inv;
          }
      dg[c] += static_cast<float>(sum_dy_xhat);
      db[c] += static_cast<float>(sum_dy);
      if (!din[0]) continue;
      for (int64_t n = 0; n < x.n(); ++n)
        for (int64_t h = 0; h < x.h(); ++h)
          for (int64_t w = 0; w < x.w(); ++w) {
            const double dy = dout.at(n, c, h, w);
            const double xhat = (x.at(n, c, h, w) - mean[c]) * inv;
            // Training: statistics depend on x, so the mean and variance terms subtract out.
            const double dx = ctx.training ? g[c] * inv * (dy - sum_dy / M - xhat * sum_dy_xhat / M) : g[c] * inv * dy;
            din[0]->at(n, c, h, w) = static_cast<float>(dx);
          }
    }
  }

 private:
  RunningStats stats_;
};

}  // namespace

std::unique_ptr<Layer> make_maxpool2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<MaxPool2d>(s, name);
}
std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<BatchNorm2d>(s, name);
}

}  // namespace crackseg::reference
