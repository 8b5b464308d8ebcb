// flatten (N, C, H, W) nhwc -> (N, C*H*W) in (c, h, w) order, as every backend defines it:
// an nhwc -> nchw permutation; backward is the inverse permutation.
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {
namespace {

class Flatten final : public CudaLayer {
 public:
  using CudaLayer::CudaLayer;
  void plan(std::span<const Dims> in) override { (void)output_dims(in); }

  static bool is_nhwc(const Tensor& t) { return t.rank() == 4 && t.format() == Format::nhwc; }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const Tensor& x = *in[0];
    expect_input(x, "input");
    if (is_nhwc(x))
      nhwc_to_nchw(x.data<float>(), out.data<float>(), x.n(), x.c(), x.h() * x.w(), 0.0f);
    else
      CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(out.raw(), x.raw(), x.nbytes(), cudaMemcpyDeviceToDevice, ctx_.stream()));
  }

  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    Tensor& dx = *din[0];
    if (is_nhwc(dx))
      nchw_to_nhwc(dout.data<float>(), dx.data<float>(), dx.n(), dx.c(), dx.h() * dx.w(), 0.0f);
    else
      CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dx.raw(), dout.raw(), dx.nbytes(), cudaMemcpyDeviceToDevice, ctx_.stream()));
  }
};

}  // namespace

std::unique_ptr<Layer> make_flatten(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Flatten>(s, name);
}

}  // namespace crackseg::cuda
