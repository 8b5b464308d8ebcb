// batchnorm2d on cuDNN (spatial mode, nhwc). Training normalises with the batch statistics;
// the running statistics follow src/layers/running_stats.hpp, the CPU backends' rule:
//   running = (1 - momentum) * running + momentum * batch,
// the batch variance unbiased (count / (count - 1) * biased), or the biased one (0) when a
// channel has a single value (N*H*W = 1), where cuDNN's own update would divide by 0 and
// make the running variance NaN. So cuDNN's forward-training gets no running buffers
// (resultRunningMean/Variance = NULL, it updates nothing) and a deterministic kernel
// computes the batch mean and variance (double, fixed order) into a small device array:
// applied at once, or kept for the trainer (Layer::set_defer_running_stats: it gathers every
// micro-batch's statistics and applies them in global micro-batch order).
// Backward reuses the mean and inverse std saved by forward. Inference uses the running
// statistics; its backward (statistics fixed) is a small kernel, since cuDNN's assumes
// batch statistics. SPATIAL_PERSISTENT is faster on nhwc but may use atomics: only outside
// bitwise mode; the mode is fixed at plan time, so forward and backward always agree.
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/layer_base.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/layers/running_stats.hpp"

namespace crackseg::cuda {
namespace {

class BatchNorm2d final : public CudaLayer {
 public:
  BatchNorm2d(const LayerSpec& s, const std::string& name) : CudaLayer(s, name) {
    const auto& b = as<BatchNorm2dSpec>();
    check_batchnorm_eps(b.eps, name_);
    running_mean_ = Tensor::empty({b.channels}, DType::f32, Format::plain, Device::cuda);
    running_var_ = Tensor::empty({b.channels}, DType::f32, Format::plain, Device::cuda);
    zero(running_mean_);
    fill(running_var_, 1.0f);
    const std::size_t bytes = sizeof(float) * static_cast<std::size_t>(b.channels);
    saved_mean_ = DevicePtr(bytes);
    saved_inv_std_ = DevicePtr(bytes);
    batch_ = DevicePtr(2 * bytes);
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
    mode_ = ctx_.options().deterministic ? CUDNN_BATCHNORM_SPATIAL : CUDNN_BATCHNORM_SPATIAL_PERSISTENT;
  }

  [[nodiscard]] std::size_t batch_stats_size() const override {
    return 2 * static_cast<std::size_t>(as<BatchNorm2dSpec>().channels);
  }
  void set_defer_running_stats(bool defer) override { defer_ = defer; }
  void read_batch_stats(std::span<float> dst) const override {
    if (dst.size() < batch_stats_size())
      throw Error("batchnorm2d '" + name_ + "': read_batch_stats into " + std::to_string(dst.size()) + " floats, needs " +
                  std::to_string(batch_stats_size()));
    CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dst.data(), batch_.get(), sizeof(float) * batch_stats_size(),
                                        cudaMemcpyDeviceToHost, ctx_.stream()));
    ctx_.synchronize();
  }
  void apply_batch_stats(std::span<const float> src) override {
    if (src.size() < batch_stats_size())
      throw Error("batchnorm2d '" + name_ + "': apply_batch_stats from " + std::to_string(src.size()) +
                  " floats, needs " + std::to_string(batch_stats_size()));
    upload_.reserve(sizeof(float) * batch_stats_size());
    // Pageable source: staged before the call returns (2C floats, once per micro-batch).
    CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(upload_.get(), src.data(), sizeof(float) * batch_stats_size(),
                                        cudaMemcpyHostToDevice, ctx_.stream()));
    update_running(upload_.as<float>());
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const auto& b = as<BatchNorm2dSpec>();
    expect_input(*in[0], "input");
    const float* scale = params_[0].value.data<float>();
    const float* shift = params_[1].value.data<float>();
    if (ctx.training) {
      // NULL running buffers: cuDNN leaves the running statistics alone (see the header).
      CRACKSEG_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
          ctx_.cudnn(), mode_, &kOne, &kZero, x_.get(), in[0]->data<float>(), x_.get(), out.data<float>(),
          stats_.get(), scale, shift, 0.0, nullptr, nullptr, static_cast<double>(b.eps), saved_mean_.as<float>(),
          saved_inv_std_.as<float>()));
      const int64_t rows = in[0]->numel() / b.channels;
      // The CPU rule, applied as a factor: unbiased_variance(1, count) = count / (count - 1), or 1.
      batchnorm_batch_stats(in[0]->data<float>(), rows, b.channels,
                            static_cast<float>(unbiased_variance(1.0, static_cast<double>(rows))), batch_.as<float>());
      if (!defer_) update_running(batch_.as<float>());
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
        ctx_.cudnn(), mode_, &kOne, &kZero, &kOne, &kOne, x_.get(), x.data<float>(), x_.get(), dout.data<float>(),
        x_.get(), dx, stats_.get(), params_[0].value.data<float>(), dscale, dshift, static_cast<double>(b.eps),
        saved_mean_.as<float>(), saved_inv_std_.as<float>()));
  }

 private:
  void update_running(const float* stats) {
    const auto& b = as<BatchNorm2dSpec>();
    batchnorm_running_update(stats, b.channels, b.momentum, running_mean_.data<float>(), running_var_.data<float>());
  }

  Tensor running_mean_, running_var_;  // (C)
  DevicePtr saved_mean_, saved_inv_std_, scratch_;
  DevicePtr batch_, upload_;  // (2C): the last training batch's mean[C], variance[C]; staging
  TensorDesc x_, stats_;
  cudnnBatchNormMode_t mode_ = CUDNN_BATCHNORM_SPATIAL;
  bool defer_ = false;
};

}  // namespace

void check_batchnorm_eps(double eps, const std::string& layer) {
  // cuDNN 9 defines CUDNN_BN_MIN_EPSILON as 0.0, so comparing with it alone lets eps = 0
  // through, and eps = 0 divides by zero on a constant channel (every channel when
  // N*H*W = 1). The real floor: eps > 0, and at least what the header says.
  if (!(eps > 0.0) || eps < CUDNN_BN_MIN_EPSILON)
    throw InputError("batchnorm2d '" + layer + "': eps " + std::to_string(eps) +
                     " must be > 0 (and >= cuDNN's CUDNN_BN_MIN_EPSILON = " + std::to_string(CUDNN_BN_MIN_EPSILON) +
                     ")");
}

std::unique_ptr<Layer> make_batchnorm2d(const LayerSpec& s, const std::string& name) {
  return std::make_unique<BatchNorm2d>(s, name);
}

}  // namespace crackseg::cuda
