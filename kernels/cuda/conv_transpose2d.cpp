// conv_transpose2d on cuDNN as the adjoint of a convolution: with t = input (N, I, h, w)
// and u = output (N, O, H, W), u = conv^T(t, w) for the convolution u -> t with filter
// (K=I, C=O, kh, kw), which is PyTorch's (I, O, kh, kw) weight layout. So
//   forward        = that convolution's backward-data
//   backward-data  = its forward
//   backward-filter= its backward-filter with x = dout, dy = input.
// So the layer's input is the geometry's dy: the operand bf16 keeps from forward
// (KeptOperand::dy, conv_core.hpp).
#include "kernels/cuda/conv_core.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {
namespace {

class ConvTranspose2d final : public CudaLayer {
 public:
  ConvTranspose2d(const LayerSpec& s, const std::string& name) : CudaLayer(s, name) {
    const auto& c = as<ConvTranspose2dSpec>();
    const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(c.out_c * c.in_c * c.kernel * c.kernel);
    w_krsc_ = DevicePtr(bytes);
    dw_krsc_ = DevicePtr(bytes);
    bias_ = make_tensor_desc();
    set_channel_desc(bias_.get(), c.out_c, name_);
  }

  void plan(std::span<const Dims> in) override {
    const auto& c = as<ConvTranspose2dSpec>();
    core_.plan(output_dims(in), {c.in_c, c.out_c, c.kernel, c.kernel}, in[0], c.padding, c.stride, 1,
               KeptOperand::dy, "conv_transpose2d '" + name_ + "'");
  }

  void params_changed() override {
    const auto& c = as<ConvTranspose2dSpec>();
    nchw_to_nhwc(params_[0].value.data<float>(), w_krsc_.as<float>(), c.in_c, c.out_c, c.kernel * c.kernel, 0.0f);
    core_.weights_changed(w_krsc_.as<float>());  // bf16: the rounded copy the passes read
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    expect_input(*in[0], "input");
    expect_input(out, "output");
    core_.backward_data(in[0]->data<float>(), w_krsc_.as<float>(), out.data<float>(), 0.0f);
    if (as<ConvTranspose2dSpec>().bias)
      CRACKSEG_CUDNN_CHECK(cudnnAddTensor(ctx_.cudnn(), &kOne, bias_.get(), params_[1].value.data<float>(), &kOne,
                                          core_.x_desc(), out.data<float>()));
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& c = as<ConvTranspose2dSpec>();
    expect_input(dout, "output gradient");
    if (din[0]) core_.forward(dout.data<float>(), w_krsc_.as<float>(), din[0]->data<float>(), 0.0f);
    core_.backward_filter(dout.data<float>(), in[0]->data<float>(), dw_krsc_.as<float>(), 0.0f);
    nhwc_to_nchw(dw_krsc_.as<float>(), params_[0].grad.data<float>(), c.in_c, c.out_c, c.kernel * c.kernel, 1.0f);
    if (c.bias)
      CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardBias(ctx_.cudnn(), &kOne, core_.x_desc(), dout.data<float>(), &kOne,
                                                        bias_.get(), params_[1].grad.data<float>()));
  }

 private:
  ConvCore core_;
  DevicePtr w_krsc_, dw_krsc_;  // (I, kh, kw, O)
  TensorDesc bias_;
};

}  // namespace

std::unique_ptr<Layer> make_conv_transpose2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<ConvTranspose2d>(s, name);
}

}  // namespace crackseg::cuda
