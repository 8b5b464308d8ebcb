// Elementwise sum of all inputs; every input's gradient is the output gradient.
#include <vector>

#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"

namespace crackseg::cuda {
namespace {

class Add final : public CudaLayer {
 public:
  using CudaLayer::CudaLayer;
  void plan(std::span<const Dims> in) override {
    (void)output_dims(in);
    ptrs_.resize(in.size());
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    ptrs_.resize(in.size());
    for (std::size_t k = 0; k < in.size(); ++k) {
      expect_input(*in[k], "input");
      ptrs_[k] = in[k]->data<float>();
    }
    add_n(ptrs_.data(), static_cast<int>(ptrs_.size()), out.data<float>(), out.numel());
  }

  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    for (Tensor* d : din)
      if (d)
        CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(d->raw(), dout.raw(), dout.nbytes(), cudaMemcpyDeviceToDevice, ctx_.stream()));
  }

 private:
  std::vector<const float*> ptrs_;
};

}  // namespace

std::unique_ptr<Layer> make_add(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Add>(s, name);
}

}  // namespace crackseg::cuda
