// Reference conv2d and conv_transpose2d (gather form, double accumulation).
#include <vector>

#include "kernels/reference/ref_layers.hpp"

namespace crackseg::reference {
namespace {

class Conv2d final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}

  // out (N, O, Ho, Wo) = b + sum_{i,ky,kx} in(N, I, y*s-p+ky*d, x*s-p+kx*d) * w(O, I, ky, kx)
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& s = as<Conv2dSpec>();
    const Tensor& x = *in[0];
    const float* xd = x.data<float>();
    const float* w = params_[0].value.data<float>();
    const float* b = s.bias ? params_[1].value.data<float>() : nullptr;
    float* y = out.data<float>();
    const int64_t N = x.n(), I = x.c(), H = x.h(), W = x.w(), O = out.c(), Ho = out.h(), Wo = out.w(), K = s.kernel;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t oy = 0; oy < Ho; ++oy)
          for (int64_t ox = 0; ox < Wo; ++ox) {
            double acc = b ? b[o] : 0.0;
            for (int64_t i = 0; i < I; ++i)
              for (int64_t ky = 0; ky < K; ++ky) {
                const int64_t iy = oy * s.stride - s.padding + ky * s.dilation;
                if (iy < 0 || iy >= H) continue;
                for (int64_t kx = 0; kx < K; ++kx) {
                  const int64_t ix = ox * s.stride - s.padding + kx * s.dilation;
                  if (ix < 0 || ix >= W) continue;
                  acc += static_cast<double>(xd[x.offset(n, i, iy, ix)]) * w[((o * I + i) * K + ky) * K + kx];
                }
              }
            y[out.offset(n, o, oy, ox)] = static_cast<float>(acc);
          }
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& s = as<Conv2dSpec>();
    const Tensor& x = *in[0];
    const float* xd = x.data<float>();
    const float* w = params_[0].value.data<float>();
    const float* dy = dout.data<float>();
    const int64_t N = x.n(), I = x.c(), H = x.h(), W = x.w(), O = dout.c(), Ho = dout.h(), Wo = dout.w(), K = s.kernel;
    if (din[0]) {  // din(n,i,h,w) = sum over taps that read (h, w)
      float* dx = din[0]->data<float>();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < I; ++i)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t ww = 0; ww < W; ++ww) {
              double acc = 0;
              for (int64_t ky = 0; ky < K; ++ky) {
                const int64_t ty = h + s.padding - ky * s.dilation;
                if (ty < 0 || ty % s.stride || ty / s.stride >= Ho) continue;
                for (int64_t kx = 0; kx < K; ++kx) {
                  const int64_t tx = ww + s.padding - kx * s.dilation;
                  if (tx < 0 || tx % s.stride || tx / s.stride >= Wo) continue;
                  for (int64_t o = 0; o < O; ++o)
                    acc += static_cast<double>(dy[dout.offset(n, o, ty / s.stride, tx / s.stride)]) *
                           w[((o * I + i) * K + ky) * K + kx];
                }
              }
              dx[din[0]->offset(n, i, h, ww)] = static_cast<float>(acc);
            }
    }
    float* dw = params_[0].grad.data<float>();
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i)
        for (int64_t ky = 0; ky < K; ++ky)
          for (int64_t kx = 0; kx < K; ++kx) {
            double acc = 0;
            for (int64_t n = 0; n < N; ++n)
              for (int64_t oy = 0; oy < Ho; ++oy) {
                const int64_t iy = oy * s.stride - s.padding + ky * s.dilation;
                if (iy < 0 || iy >= H) continue;
                for (int64_t ox = 0; ox < Wo; ++ox) {
                  const int64_t ix = ox * s.stride - s.padding + kx * s.dilation;
                  if (ix < 0 || ix >= W) continue;
                  acc += static_cast<double>(dy[dout.offset(n, o, oy, ox)]) * xd[x.offset(n, i, iy, ix)];
                }
              }
            dw[((o * I + i) * K + ky) * K + kx] += static_cast<float>(acc);
          }
    if (s.bias) {
      float* db = params_[1].grad.data<float>();
      for (int64_t o = 0; o < O; ++o) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t oy = 0; oy < Ho; ++oy)
            for (int64_t ox = 0; ox < Wo; ++ox) acc += dy[dout.offset(n, o, oy, ox)];
        db[o] += static_cast<float>(acc);
      }
    }
  }
};

// Weights (I, O, kh, kw). Input pixel (h, w) scatters to output (h*s - p + ky, w*s - p + kx).
class ConvTranspose2d final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& s = as<ConvTranspose2dSpec>();
    const Tensor& x = *in[0];
    const float* xd = x.data<float>();
    const float* w = params_[0].value.data<float>();
    const float* b = s.bias ? params_[1].value.data<float>() : nullptr;
    float* y = out.data<float>();
    const int64_t N = x.n(), I = x.c(), H = x.h(), W = x.w(), O = out.c(), Ho = out.h(), Wo = out.w(), K = s.kernel;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t oy = 0; oy < Ho; ++oy)
          for (int64_t ox = 0; ox < Wo; ++ox) {
            double acc = b ? b[o] : 0.0;
            for (int64_t ky = 0; ky < K; ++ky) {
              const int64_t ty = oy + s.padding - ky;
              if (ty < 0 || ty % s.stride || ty / s.stride >= H) continue;
              for (int64_t kx = 0; kx < K; ++kx) {
                const int64_t tx = ox + s.padding - kx;
                if (tx < 0 || tx % s.stride || tx / s.stride >= W) continue;
                for (int64_t i = 0; i < I; ++i)
                  acc += static_cast<double>(xd[x.offset(n, i, ty / s.stride, tx / s.stride)]) *
                         w[((i * O + o) * K + ky) * K + kx];
              }
            }
            y[out.offset(n, o, oy, ox)] = static_cast<float>(acc);
          }
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& s = as<ConvTranspose2dSpec>();
    const Tensor& x = *in[0];
    const float* xd = x.data<float>();
    const float* w = params_[0].value.data<float>();
    const float* dy = dout.data<float>();
    const int64_t N = x.n(), I = x.c(), H = x.h(), W = x.w(), O = dout.c(), Ho = dout.h(), Wo = dout.w(), K = s.kernel;
    auto tap = [&](int64_t h, int64_t k, int64_t) { return h * s.stride - s.padding + k; };
    if (din[0]) {
      float* dx = din[0]->data<float>();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < I; ++i)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t ww = 0; ww < W; ++ww) {
              double acc = 0;
              for (int64_t ky = 0; ky < K; ++ky) {
                const int64_t oy = tap(h, ky, Ho);
                if (oy < 0 || oy >= Ho) continue;
                for (int64_t kx = 0; kx < K; ++kx) {
                  const int64_t ox = tap(ww, kx, Wo);
                  if (ox < 0 || ox >= Wo) continue;
                  for (int64_t o = 0; o < O; ++o)
                    acc += static_cast<double>(dy[dout.offset(n, o, oy, ox)]) * w[((i * O + o) * K + ky) * K + kx];
                }
              }
              dx[din[0]->offset(n, i, h, ww)] = static_cast<float>(acc);
            }
    }
    float* dw = params_[0].grad.data<float>();
    for (int64_t i = 0; i < I; ++i)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t ky = 0; ky < K; ++ky)
          for (int64_t kx = 0; kx < K; ++kx) {
            double acc = 0;
            for (int64_t n = 0; n < N; ++n)
              for (int64_t h = 0; h < H; ++h) {
                const int64_t oy = tap(h, ky, Ho);
                if (oy < 0 || oy >= Ho) continue;
                for (int64_t ww = 0; ww < W; ++ww) {
                  const int64_t ox = tap(ww, kx, Wo);
                  if (ox < 0 || ox >= Wo) continue;
                  acc += static_cast<double>(xd[x.offset(n, i, h, ww)]) * dy[dout.offset(n, o, oy, ox)];
                }
              }
            dw[((i * O + o) * K + ky) * K + kx] += static_cast<float>(acc);
          }
    if (s.bias) {
      float* db = params_[1].grad.data<float>();
      for (int64_t o = 0; o < O; ++o) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t oy = 0; oy < Ho; ++oy)
            for (int64_t ox = 0; ox < Wo; ++ox) acc += dy[dout.offset(n, o, oy, ox)];
        db[o] += static_cast<float>(acc);
      }
    }
  }
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Conv2d>(s, name);
}
std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<ConvTranspose2d>(s, name);
}

}  // namespace crackseg::reference
