// maxpool2d on cuDNN. MAX_DETERMINISTIC routes each output's gradient to one input (the
// first maximum, as the reference does) without atomics, so backward is reproducible.
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"

namespace crackseg::cuda {
namespace {

class MaxPool2d final : public CudaLayer {
 public:
  MaxPool2d(const LayerSpec& s, const std::string& name) : CudaLayer(s, name) {
    const auto& p = as<MaxPool2dSpec>();
    pool_ = make_pool_desc();
    const int k = to_int(p.kernel, name_), st = to_int(p.stride, name_), pad = to_int(p.padding, name_);
    CRACKSEG_CUDNN_CHECK(cudnnSetPooling2dDescriptor(pool_.get(), CUDNN_POOLING_MAX_DETERMINISTIC,
                                                     CUDNN_NOT_PROPAGATE_NAN, k, k, pad, pad, st, st));
    x_ = make_tensor_desc();
    y_ = make_tensor_desc();
  }

  void plan(std::span<const Dims> in) override {
    const Dims out = output_dims(in);
    set_activation_desc(x_.get(), in[0], name_);
    set_activation_desc(y_.get(), out, name_);
    int n = 0, c = 0, h = 0, w = 0;
    CRACKSEG_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(pool_.get(), x_.get(), &n, &c, &h, &w));
    if (Dims{n, c, h, w} != out)
      throw Error("maxpool2d '" + name_ + "': cuDNN computes " + to_string(Dims{n, c, h, w}) + " for " +
                  to_string(in[0]) + ", the layer expects " + to_string(out));
  }

  void forward(const StepContext&, std::span<const Tensor* const> in, Tensor& out) override {
    expect_input(*in[0], "input");
    CRACKSEG_CUDNN_CHECK(cudnnPoolingForward(ctx_.cudnn(), pool_.get(), &kOne, x_.get(), in[0]->data<float>(), &kZero,
                                             y_.get(), out.data<float>()));
  }

  void backward(const StepContext&, std::span<const Tensor* const> in, const Tensor& out, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    CRACKSEG_CUDNN_CHECK(cudnnPoolingBackward(ctx_.cudnn(), pool_.get(), &kOne, y_.get(), out.data<float>(), y_.get(),
                                              dout.data<float>(), x_.get(), in[0]->data<float>(), &kZero, x_.get(),
                                              din[0]->data<float>()));
  }

 private:
  PoolDesc pool_;
  TensorDesc x_, y_;
};

}  // namespace

std::unique_ptr<Layer> make_maxpool2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<MaxPool2d>(s, name);
}

}  // namespace crackseg::cuda
