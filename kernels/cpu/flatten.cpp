// Flatten (N, C, H, W) nhwc -> (N, C*H*W) in (c, h, w) order: a per-sample transpose
// (OpenMP). Backward transposes back.
#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg::onednn {
namespace {

class Flatten final : public DnnlLayer {
 public:
  using DnnlLayer::DnnlLayer;
  void plan(std::span<const Dims>) override {}
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    transpose(*in[0], out.data<float>(), true);
  }
  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (din[0]) transpose(*din[0], const_cast<float*>(dout.data<float>()), false);
    (void)in;
  }

 private:
  // to_flat: flat[n][c*HW + p] = x[n][p*C + c]; otherwise the reverse into x.
  static void transpose(const Tensor& x4, float* flat, bool to_flat) {
    const int64_t N = x4.n(), C = x4.c(), HW = x4.h() * x4.w();
    float* x = const_cast<float*>(x4.data<float>());
    if (x4.format() != Format::nhwc) {  // nchw is already (c, h, w) order
      if (to_flat) std::copy(x, x + x4.numel(), flat);
      else std::copy(flat, flat + x4.numel(), x);
      return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t p = 0; p < HW; ++p) {
          float& a = flat[(n * C + c) * HW + p];
          float& b = x[(n * HW + p) * C + c];
          if (to_flat) a = b;
          else b = a;
        }
  }
};

}  // namespace

std::unique_ptr<Layer> make_flatten(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Flatten>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
