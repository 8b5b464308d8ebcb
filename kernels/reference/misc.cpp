// Reference linear, flatten, concat (channels) and add.
#include "kernels/reference/ref_layers.hpp"

namespace crackseg::reference {
namespace {

// in (N, I), weight (O, I), out (N, O).
class Linear final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& s = as<LinearSpec>();
    const float* x = in[0]->data<float>();
    const float* w = params_[0].value.data<float>();
    float* y = out.data<float>();
    for (int64_t n = 0; n < out.dim(0); ++n)
      for (int64_t o = 0; o < s.out_f; ++o) {
        double acc = s.bias ? params_[1].value.data<float>()[o] : 0.0f;
        for (int64_t i = 0; i < s.in_f; ++i) acc += static_cast<double>(x[n * s.in_f + i]) * w[o * s.in_f + i];
        y[n * s.out_f + o] = static_cast<float>(acc);
      }
  }
  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& s = as<LinearSpec>();
    const int64_t N = dout.dim(0);
    const float* x = in[0]->data<float>();
    const float* w = params_[0].value.data<float>();
    const float* dy = dout.data<float>();
    if (din[0]) {
      float* dx = din[0]->data<float>();
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < s.in_f; ++i) {
          double acc = 0;
          for (int64_t o = 0; o < s.out_f; ++o) acc += static_cast<double>(dy[n * s.out_f + o]) * w[o * s.in_f + i];
          dx[n * s.in_f + i] = static_cast<float>(acc);
        }
    }
    float* dw = params_[0].grad.data<float>();
    for (int64_t o = 0; o < s.out_f; ++o) {
      for (int64_t i = 0; i < s.in_f; ++i) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) acc += static_cast<double>(dy[n * s.out_f + o]) * x[n * s.in_f + i];
        dw[o * s.in_f + i] += static_cast<float>(acc);
      }
      if (s.bias) {
        double acc = 0;
        for (int64_t n = 0; n < N; ++n) acc += dy[n * s.out_f + o];
        params_[1].grad.data<float>()[o] += static_cast<float>(acc);
      }
    }
  }
};

// (N, C, H, W) -> (N, C*H*W) in (c, h, w) order whatever the input format.
class Flatten final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const Tensor& x = *in[0];
    float* y = out.data<float>();
    int64_t k = 0;
    for (int64_t n = 0; n < x.n(); ++n)
      for (int64_t c = 0; c < x.c(); ++c)
        for (int64_t h = 0; h < x.h(); ++h)
          for (int64_t w = 0; w < x.w(); ++w) y[k++] = x.at(n, c, h, w);
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    Tensor& dx = *din[0];
    const float* dy = dout.data<float>();
    int64_t k = 0;
    for (int64_t n = 0; n < dx.n(); ++n)
      for (int64_t c = 0; c < dx.c(); ++c)
        for (int64_t h = 0; h < dx.h(); ++h)
          for (int64_t w = 0; w < dx.w(); ++w) dx.at(n, c, h, w) = dy[k++];
  }
};

class Concat final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    int64_t c0 = 0;
    for (const Tensor* t : in) {
      for (int64_t n = 0; n < t->n(); ++n)
        for (int64_t c = 0; c < t->c(); ++c)
          for (int64_t h = 0; h < t->h(); ++h)
            for (int64_t w = 0; w < t->w(); ++w) out.at(n, c0 + c, h, w) = t->at(n, c, h, w);
      c0 += t->c();
    }
  }
  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    int64_t c0 = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {
      if (Tensor* d = din[k])
        for (int64_t n = 0; n < d->n(); ++n)
          for (int64_t c = 0; c < d->c(); ++c)
            for (int64_t h = 0; h < d->h(); ++h)
              for (int64_t w = 0; w < d->w(); ++w) d->at(n, c, h, w) = dout.at(n, c0 + c, h, w);
      c0 += in[k]->c();
    }
  }
};

class Add final : public LayerBase {
 public:
  using LayerBase::LayerBase;
  void plan(std::span<const Dims>) override {}
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    auto y = out.span<float>();
    for (std::size_t i = 0; i < y.size(); ++i) {
      double acc = 0;
      for (const Tensor* t : in) acc += t->data<float>()[i];
      y[i] = static_cast<float>(acc);
    }
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    for (Tensor* d : din)
      if (d) d->copy_from(dout);
  }
};

}  // namespace

std::unique_ptr<Layer> make_linear(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Linear>(s, name);
}
std::unique_ptr<Layer> make_flatten(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Flatten>(s, name);
}
std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Concat>(s, name);
}
std::unique_ptr<Layer> make_add(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Add>(s, name);
}

}  // namespace crackseg::reference
