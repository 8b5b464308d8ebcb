// Softmax over channels (4-D nhwc) or features (2-D) on cuDNN; backward from the saved
// output, as the reference does.
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"

namespace crackseg::cuda {
namespace {

class Softmax final : public CudaLayer {
 public:
  Softmax(const LayerSpec& s, const std::string& name) : CudaLayer(s, name), desc_(make_tensor_desc()) {}

  void plan(std::span<const Dims> in) override { set_activation_desc(desc_.get(), in[0], name_); }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    expect_input(*in[0], "input");
    CRACKSEG_CUDNN_CHECK(cudnnSoftmaxForward(ctx_.cudnn(), CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_CHANNEL, &kOne,
                                             desc_.get(), in[0]->data<float>(), &kZero, desc_.get(),
                                             out.data<float>()));
  }

  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    CRACKSEG_CUDNN_CHECK(cudnnSoftmaxBackward(ctx_.cudnn(), CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_CHANNEL, &kOne,
                                              desc_.get(), out.data<float>(), desc_.get(), dout.data<float>(), &kZero,
                                              desc_.get(), din[0]->data<float>()));
  }

 private:
  TensorDesc desc_;
};

}  // namespace

std::unique_ptr<Layer> make_softmax(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Softmax>(s, name);
}

}  // namespace crackseg::cuda
