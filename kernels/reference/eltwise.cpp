// Reference elementwise layers: relu, leaky_relu, sigmoid (backward from the saved output,
// as the fused oneDNN path does), softmax over channels, dropout.
#include <cmath>
#include <vector>

#include "kernels/reference/ref_layers.hpp"
#include "src/layers/dropout_mask.hpp"

namespace crackseg::reference {
namespace {

class Eltwise final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}
  // in and out share dims and format, so a flat walk is layout independent.
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    auto x = in[0]->span<float>();
    auto y = out.span<float>();
    const float slope = std::holds_alternative<LeakyReluSpec>(spec_) ? as<LeakyReluSpec>().slope : 0.0f;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      if (std::holds_alternative<SigmoidSpec>(spec_))
        y[i] = static_cast<float>(1.0 / (1.0 + std::exp(-v)));
      else
        y[i] = static_cast<float>(v > 0 ? v : slope * v);
    }
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    auto y = out.span<float>();
    auto dy = dout.span<float>();
    auto dx = din[0]->span<float>();
    const float slope = std::holds_alternative<LeakyReluSpec>(spec_) ? as<LeakyReluSpec>().slope : 0.0f;
    for (std::size_t i = 0; i < y.size(); ++i) {
      const double v = y[i];
      if (std::holds_alternative<SigmoidSpec>(spec_))
        dx[i] = static_cast<float>(dy[i] * v * (1.0 - v));
      else
        dx[i] = v > 0 ? dy[i] : static_cast<float>(slope * static_cast<double>(dy[i]));
    }
  }
};

// Visits every (n, position) with the element offsets of channel 0 and the channel stride,
// for 4-D (N, C, H, W) in any format or 2-D (N, F) (softmax over F).
template <class F>
void for_each_channel_vector(const Tensor& t, F&& f) {
  if (t.rank() == 2) {
    for (int64_t n = 0; n < t.dim(0); ++n) f(n * t.dim(1), int64_t{1}, t.dim(1));
    return;
  }
  const int64_t cs = t.c() > 1 ? t.offset(0, 1, 0, 0) : 1;
  for (int64_t n = 0; n < t.n(); ++n)
    for (int64_t h = 0; h < t.h(); ++h)
      for (int64_t w = 0; w < t.w(); ++w) f(t.offset(n, 0, h, w), cs, t.c());
}

class Softmax final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const float* x = in[0]->data<float>();
    float* y = out.data<float>();
    for_each_channel_vector(*in[0], [&](int64_t base, int64_t cs, int64_t C) {
      double mx = x[base];
      for (int64_t c = 1; c < C; ++c) mx = std::max<double>(mx, x[base + c * cs]);
      double sum = 0;
      for (int64_t c = 0; c < C; ++c) sum += std::exp(x[base + c * cs] - mx);
      for (int64_t c = 0; c < C; ++c) y[base + c * cs] = static_cast<float>(std::exp(x[base + c * cs] - mx) / sum);
    });
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    const float* y = out.data<float>();
    const float* dy = dout.data<float>();
    float* dx = din[0]->data<float>();
    for_each_channel_vector(out, [&](int64_t base, int64_t cs, int64_t C) {
      double dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += static_cast<double>(dy[base + c * cs]) * y[base + c * cs];
      for (int64_t c = 0; c < C; ++c)
        dx[base + c * cs] = static_cast<float>(y[base + c * cs] * (dy[base + c * cs] - dot));
    });
  }
};

class Dropout final : public LayerBase {
 public:
  Dropout(const LayerSpec& s, const std::string& name) : LayerBase(s, name), salt_(name_salt(name)) {}
  void plan(std::span<const Dims>) override {}

  // Calls f(offset, logical index i, n) for every element.
  template <class F>
  static void walk(const Tensor& t, F&& f) {
    if (t.rank() != 4) {
      const int64_t per = t.dim(0) ? t.numel() / t.dim(0) : 0;
      for (int64_t n = 0; n < t.dim(0); ++n)
        for (int64_t i = 0; i < per; ++i) f(n * per + i, i, n);
      return;
    }
    for (int64_t n = 0; n < t.n(); ++n)
      for (int64_t c = 0; c < t.c(); ++c)
        for (int64_t h = 0; h < t.h(); ++h)
          for (int64_t w = 0; w < t.w(); ++w) f(t.offset(n, c, h, w), (c * t.h() + h) * t.w() + w, n);
  }

  void apply(const StepContext& ctx, const Tensor& src, Tensor& dst) const {
    const float p = as<DropoutSpec>().p;
    const float* x = src.data<float>();
    float* y = dst.data<float>();
    if (!ctx.training || p <= 0.0f) {
      std::copy(x, x + src.numel(), y);
      return;
    }
    const double scale = p >= 1.0f ? 0.0 : 1.0 / (1.0 - p);
    walk(src, [&](int64_t off, int64_t i, int64_t n) {
      const bool drop = dropout_dropped(ctx, dropout_sample_id(ctx, n), salt_, static_cast<uint64_t>(i), p);
      y[off] = drop ? 0.0f : static_cast<float>(x[off] * scale);
    });
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    apply(ctx, *in[0], out);
  }
  void backward(const StepContext& ctx, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (din[0]) apply(ctx, dout, *din[0]);  // same mask, same scale: the op is linear
  }

 private:
  uint32_t salt_;
};

}  // namespace

std::unique_ptr<Layer> make_eltwise(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Eltwise>(s, name);
}
std::unique_ptr<Layer> make_softmax(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Softmax>(s, name);
}
std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Dropout>(s, name);
}

}  // namespace crackseg::reference
