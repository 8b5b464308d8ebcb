// Concatenation along channels. In nhwc every input is a run of C_k floats per pixel, so
// forward and backward are strided 2-D copies (cudaMemcpy2DAsync): rows = N*H*W pixels,
// row width C_k, destination pitch C_total. 2-D (N, F) inputs are the same with rows = N.
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"

namespace crackseg::cuda {
namespace {

class Concat final : public CudaLayer {
 public:
  using CudaLayer::CudaLayer;
  void plan(std::span<const Dims> in) override { (void)output_dims(in); }

  static int64_t rows(const Tensor& t) { return t.rank() == 4 ? t.n() * t.h() * t.w() : t.dim(0); }
  static int64_t width(const Tensor& t) { return t.rank() == 4 ? t.c() : t.numel() / std::max<int64_t>(t.dim(0), 1); }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    const std::size_t pitch = sizeof(float) * static_cast<std::size_t>(width(out));
    std::size_t offset = 0;
    for (const Tensor* t : in) {
      expect_input(*t, "input");
      const std::size_t w = sizeof(float) * static_cast<std::size_t>(width(*t));
      CRACKSEG_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(out.raw()) + offset, pitch, t->raw(), w, w,
                                            static_cast<std::size_t>(rows(*t)), cudaMemcpyDeviceToDevice, ctx_.stream()));
      offset += w;
    }
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const std::size_t pitch = sizeof(float) * static_cast<std::size_t>(width(dout));
    std::size_t offset = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {
      const std::size_t w = sizeof(float) * static_cast<std::size_t>(width(*in[k]));
      if (Tensor* d = din[k])
        CRACKSEG_CUDA_CHECK(cudaMemcpy2DAsync(d->raw(), w, static_cast<const char*>(dout.raw()) + offset, pitch, w,
                                              static_cast<std::size_t>(rows(*in[k])), cudaMemcpyDeviceToDevice,
                                              ctx_.stream()));
      offset += w;
    }
  }
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Concat>(s, name);
}

}  // namespace crackseg::cuda
