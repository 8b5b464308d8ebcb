// batchnorm2d on cuDNN (spatial mode, nhwc). Training uses the batch statistics and
// updates the running ones as running = (1 - momentum) * running + momentum * batch, the
// variance unbiased (cuDNN's convention, PyTorch's and the reference's); backward reuses
// the mean and inverse std saved by forward. Inference uses the running statistics; its
// backward (statistics fixed) is a small kernel, since cuDNN's assumes batch statistics.
// SPATIAL_PERSISTENT is faster on nhwc but may use atomics: only outside bitwise mode.
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"

namespace crackseg::cuda {
namespace {

class BatchNorm2d final : public CudaLayer {
 public:
  BatchNorm2d(const LayerSpec& s, const std::string& name) : CudaLayer(s, name) {
    const auto& b = as<BatchNorm2dSpec>();
    if (b.eps < CUDNN_BN_MIN_EPSILON)
      throw InputError("batchnorm2d '" + name_ + "': eps " + std::to_string(b.eps) + " is below cuDNN's minimum " +
                       std::to_string(CUDNN_BN_MIN_EPSILON));
    running_mean_ = Tensor::empty({b.channels}, DType::f32, Format::plain, Device::cuda);
    running_var_ = Tensor::empty({b.channels}, DType::f32, Format::plain, Device::cuda);
    zero(running_mean_);
    fill(running_var_, 1.0f);
    const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(b.channels);
    saved_mean_ = DevicePtr(bytes);
    saved_inv_std_ = DevicePtr(bytes);
    x_ = make_tensor_desc();
    stats_ = make_tensor_desc();
    set_channel_desc(stats_.get(), b.channels, name_);
  }

  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    return {{name_ + ".running_mean", &running_mean_}, {name_ + ".running_var", &running_var_}};
  }

  void plan(std::span<const Dims> in) override {
    (void)output_dims(in);
    set_activation_desc(x_.get(), in[0], name_);
  }

  [[nodiscard]] cudnnBatchNormMode_t mode() const {
    return ctx_.options().deterministic ? CUDNN_BATCHNORM_SPATIAL : CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& b = as<BatchNorm2dSpec>();
    expect_input(*in[0], "input");
    const float* scale = params_[0].value.data<float>();
    const float* shift = params_[1].value.data<float>();
    if (ctx.training) {
      CRACKSEG_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
          ctx_.cudnn(), mode(), &kOne, &kZero, x_.get(), in[0]->data<float>(), x_.get(), out.data<float>(),
          stats_.get(), scale, shift, static_cast<double>(b.momentum), running_mean_.data<float>(),
          running_var_.data<float>(), static_cast<double>(b.eps), saved_mean_.as<float>(), saved_inv_std_.as<float>()));
    } else {
      CRACKSEG_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
          ctx_.cudnn(), CUDNN_BATCHNORM_SPATIAL, &kOne, &kZero, x_.get(), in[0]->data<float>(), x_.get(),
          out.data<float>(), stats_.get(), scale, shift, running_mean_.data<float>(), running_var_.data<float>(),
          static_cast<double>(b.eps)));
    }
  }

  void backward(const StepContext& ctx, std::span<const Tensor* const> in, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    const auto& b = as<BatchNorm2dSpec>();
    const Tensor& x = *in[0];
    float* dscale = params_[0].grad.data<float>();
    float* dshift = params_[1].grad.data<float>();
    if (!ctx.training) {
      batchnorm_fixed_backward(x.data<float>(), dout.data<float>(), params_[0].value.data<float>(),
                               running_mean_.data<float>(), running_var_.data<float>(), b.eps, x.numel() / b.channels,
                               b.channels, din[0] ? din[0]->data<float>() : nullptr, dscale, dshift);
      return;
    }
    float* dx = nullptr;
    if (din[0]) {
      dx = din[0]->data<float>();
    } else {  // cuDNN always writes dx: give it scratch (allocated once per shape)
      scratch_.reserve(x.nbytes());
      dx = scratch_.as<float>();
    }
    // alphaParamDiff 1, betaParamDiff 1: parameter gradients accumulate, as the Layer contract asks.
    CRACKSEG_CUDNN_CHECK(cudnnBatchNormalizationBackward(
        ctx_.cudnn(), mode(), &kOne, &kZero, &kOne, &kOne, x_.get(), x.data<float>(), x_.get(), dout.data<float>(),
        x_.get(), dx, stats_.get(), params_[0].value.data<float>(), dscale, dshift, static_cast<double>(b.eps),
        saved_mean_.as<float>(), saved_inv_std_.as<float>()));
  }

 private:
  Tensor running_mean_, running_var_;  // (C)
  DevicePtr saved_mean_, saved_inv_std_, scratch_;
  TensorDesc x_, stats_;
};

}  // namespace

std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<BatchNorm2d>(s, name);
}

}  // namespace crackseg::cuda
