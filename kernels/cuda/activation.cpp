// relu and sigmoid on cuDNN; leaky relu by a .cu kernel (cuDNN's legacy activations have no
// leaky variant). Flat descriptors: elementwise ops do not care about layout.
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"

namespace crackseg::cuda {
namespace {

class Activation final : public CudaLayer {
 public:
  Activation(const LayerSpec& s, const std::string& name) : CudaLayer(s, name) {
    if (std::holds_alternative<LeakyReluSpec>(spec_)) return;
    act_ = make_activation_desc();
    const auto mode = std::holds_alternative<SigmoidSpec>(spec_) ? CUDNN_ACTIVATION_SIGMOID : CUDNN_ACTIVATION_RELU;
    CRACKSEG_CUDNN_CHECK(cudnnSetActivationDescriptor(act_.get(), mode, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    desc_ = make_tensor_desc();
  }

  void plan(std::span<const Dims> in) override {
    if (desc_) set_flat_desc(desc_.get(), numel(in[0]), name_);
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    expect_input(*in[0], "input");
    if (!act_) {
      leaky_relu_forward(in[0]->data<float>(), out.data<float>(), as<LeakyReluSpec>().slope, out.numel());
      return;
    }
    CRACKSEG_CUDNN_CHECK(cudnnActivationForward(ctx_.cudnn(), act_.get(), &kOne, desc_.get(), in[0]->data<float>(),
                                                &kZero, desc_.get(), out.data<float>()));
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    if (!act_) {
      leaky_relu_backward(out.data<float>(), dout.data<float>(), din[0]->data<float>(), as<LeakyReluSpec>().slope,
                          out.numel());
      return;
    }
    CRACKSEG_CUDNN_CHECK(cudnnActivationBackward(ctx_.cudnn(), act_.get(), &kOne, desc_.get(), out.data<float>(),
                                                 desc_.get(), dout.data<float>(), desc_.get(), in[0]->data<float>(),
                                                 &kZero, desc_.get(), din[0]->data<float>()));
  }

 private:
  ActivationDesc act_;
  TensorDesc desc_;
};

}  // namespace

std::unique_ptr<Layer> make_activation(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Activation>(s, name);
}

}  // namespace crackseg::cuda
