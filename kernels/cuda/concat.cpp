// Concatenation along channels. In nhwc every input is a run of C_k floats per pixel, so
// forward and backward are strided column copies (a kernel, copy_columns: narrow inputs,
// down to 1 channel, would make cudaMemcpy2DAsync move 4-byte rows): rows = N*H*W pixels,
// width C_k, destination pitch C_total. 2-D (N, F) inputs are the same with rows = N.
#include "kernels/cuda/elementwise.hpp"
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
    const int64_t pitch = width(out);
    int64_t offset = 0;
    for (const Tensor* t : in) {
      expect_input(*t, "input");
      const int64_t w = width(*t);
      copy_columns(out.data<float>() + offset, pitch, t->data<float>(), w, w, rows(*t));
      offset += w;
    }
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const int64_t pitch = width(dout);
    int64_t offset = 0;
    for (std::size_t k = 0; k < in.size(); ++k) {
      const int64_t w = width(*in[k]);
      if (Tensor* d = din[k]) copy_columns(d->data<float>(), w, dout.data<float>() + offset, pitch, w, rows(*in[k]));
      offset += w;
    }
  }
};

}  // namespace

std::unique_ptr<Layer> make_concat(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Concat>(s, name);
}

}  // namespace crackseg::cuda
