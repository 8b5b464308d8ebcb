// conv2d on cuDNN: forward, backward-data, backward-filter, bias. Weights stay in the
// parameter's plain (O, I, kh, kw) layout for the optimizer and checkpoints; a KRSC copy
// (cuDNN's NHWC filter, what tensor-core kernels read) is refreshed in params_changed(),
// and the filter gradient is computed in KRSC and added back transposed. bf16
// (train.precision): ConvCore rounds the operands and widens the results (conv_core.hpp).
#include "kernels/cuda/conv_core.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {
namespace {

class Conv2d final : public CudaLayer {
 public:
  Conv2d(const LayerSpec& s, const std::string& name) : CudaLayer(s, name) {
    const auto& c = as<Conv2dSpec>();
    const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(c.out_c * c.in_c * c.kernel * c.kernel);
    w_krsc_ = DevicePtr(bytes);
    dw_krsc_ = DevicePtr(bytes);
    bias_ = make_tensor_desc();
    set_channel_desc(bias_.get(), c.out_c, name_);
  }

  void plan(std::span<const Dims> in) override {
    const auto& c = as<Conv2dSpec>();
    core_.plan(in[0], {c.out_c, c.in_c, c.kernel, c.kernel}, output_dims(in), c.padding, c.stride, c.dilation,
               KeptOperand::x, "conv2d '" + name_ + "'");
  }

  void params_changed() override {
    const auto& c = as<Conv2dSpec>();
    nchw_to_nhwc(params_[0].value.data<float>(), w_krsc_.as<float>(), c.out_c, c.in_c, c.kernel * c.kernel, 0.0f);
    core_.weights_changed(w_krsc_.as<float>());  // bf16: the rounded copy the passes read
  }

  // out (N, O, Ho, Wo) = conv(in, w) + b
  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    expect_input(*in[0], "input");
    expect_input(out, "output");
    core_.forward(in[0]->data<float>(), w_krsc_.as<float>(), out.data<float>(), 0.0f);
    if (as<Conv2dSpec>().bias)
      CRACKSEG_CUDNN_CHECK(cudnnAddTensor(ctx_.cudnn(), &kOne, bias_.get(), params_[1].value.data<float>(), &kOne,
                                          core_.y_desc(), out.data<float>()));
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& c = as<Conv2dSpec>();
    expect_input(dout, "output gradient");
    if (din[0]) core_.backward_data(dout.data<float>(), w_krsc_.as<float>(), din[0]->data<float>(), 0.0f);
    core_.backward_filter(in[0]->data<float>(), dout.data<float>(), dw_krsc_.as<float>(), 0.0f);
    nhwc_to_nchw(dw_krsc_.as<float>(), params_[0].grad.data<float>(), c.out_c, c.in_c, c.kernel * c.kernel, 1.0f);
    if (c.bias)
      CRACKSEG_CUDNN_CHECK(cudnnConvolutionBackwardBias(ctx_.cudnn(), &kOne, core_.y_desc(), dout.data<float>(), &kOne,
                                                        bias_.get(), params_[1].grad.data<float>()));
  }

 private:
  ConvCore core_;
  DevicePtr w_krsc_, dw_krsc_;  // (O, kh, kw, I)
  TensorDesc bias_;
};

}  // namespace

std::unique_ptr<Layer> make_conv2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<Conv2d>(s, name);
}

}  // namespace crackseg::cuda
