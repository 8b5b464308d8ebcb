#include "kernels/cuda/backend.hpp"

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/labelled_layer.hpp"
#include "kernels/cuda/layers.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/graph/backend.hpp"

namespace crackseg::cuda {

namespace {
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

class CudaBackend final : public Backend {
 public:
  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::cuda; }
  // nhwc: cuDNN's tensor-core convolution kernels read channels-last natively; nchw would
  // cost a transpose around every convolution (docs/GPU.md).
  Format activation_format() const override { return Format::nhwc; }
  std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) override {
    return labelled(make(spec, name), name);
  }
  std::unique_ptr<Layer> make(const LayerSpec& spec, const std::string& name) {
    return std::visit(overloaded{
                          [&](const Conv2dSpec&) { return make_conv2d(spec, name); },
                          [&](const ConvTranspose2dSpec&) { return make_conv_transpose2d(spec, name); },
                          [&](const MaxPool2dSpec&) { return make_maxpool2d(spec, name); },
                          [&](const BatchNorm2dSpec&) { return make_batchnorm2d(spec, name); },
                          [&](const ReluSpec&) { return make_activation(spec, name); },
                          [&](const LeakyReluSpec&) { return make_activation(spec, name); },
                          [&](const SigmoidSpec&) { return make_activation(spec, name); },
                          [&](const SoftmaxSpec&) { return make_softmax(spec, name); },
                          [&](const DropoutSpec&) { return make_dropout(spec, name); },
                          [&](const LinearSpec&) { return make_linear(spec, name); },
                          [&](const FlattenSpec&) { return make_flatten(spec, name); },
                          [&](const ConcatSpec&) { return make_concat(spec, name); },
                          [&](const AddSpec&) { return make_add(spec, name); },
                      },
                      spec);
  }
  // train.precision for layers made after this call (bench --precision, tests; the trainer
  // sets it through the device kit, train_kit.cpp, with train.determinism). The Backend
  // interface has no determinism: asking for tf32 or bf16 here selects the fast mode, which
  // both need (precision.hpp); bf16 is refused on a GPU below compute capability 8.0.
  void set_precision(const std::string& precision) override {
    Context& ctx = Context::get();
    CudaOptions o = ctx.options();
    const DeviceInfo& dev = ctx.device_info();
    const ConvPrecision p = cuda_precision(precision, false, dev.name, dev.cc_major, dev.cc_minor);
    if (p != ConvPrecision::fp32) o.deterministic = false;
    o.tf32 = p == ConvPrecision::tf32;
    o.bf16 = p == ConvPrecision::bf16;
    ctx.set_options(o);
  }
  std::string precision_summary() const override {
    const Context& ctx = Context::get();
    switch (ctx.conv_precision()) {
      case ConvPrecision::bf16:
        return "bf16 (" + std::to_string(ctx.bf16_layers) + " convolutions; " + std::to_string(ctx.bf16_fallbacks) +
               " without a bf16 algorithm stay fp32; cuDNN)";
      case ConvPrecision::tf32: return "tf32 (cuDNN/cuBLAS tensor-op math on fp32 data)";
      case ConvPrecision::fp32: break;
    }
    return "fp32";
  }
  // Host tensor (any format) -> device tensor `dst` (its own format).
  void upload(const Tensor& host, Tensor& dst) override { copy(host, dst); }

  // The Backend hooks the Graph performs its own tensor work through: copy for any device
  // pair and format (host batches are uploaded here), dst += src on the device, zero.
  void copy(const Tensor& src, Tensor& dst) override {
    if (src.device() == Device::cpu && dst.device() == Device::cpu) {
      Backend::copy(src, dst);
    } else if (src.device() == Device::cpu && same_layout(src, dst)) {  // pinned staging, no stream drain
      upload_async(src, dst);
    } else if (same_layout(src, dst)) {
      cuda::copy(src, dst);
    } else if (src.device() == Device::cuda && dst.device() == Device::cuda) {
      convert_format(src, dst);
    } else if (src.device() == Device::cpu) {  // host -> device, converting on the device
      // The device copy of the host layout is kept across calls (batches keep their shape):
      // no allocation, and no free (which would wait for the device) per batch.
      if (!staged_.defined() || staged_.dims() != src.dims() || staged_.format() != src.format() ||
          staged_.dtype() != src.dtype())
        staged_ = Tensor::empty(src.dims(), src.dtype(), src.format(), Device::cuda);
      upload_async(src, staged_);
      convert_format(staged_, dst);
    } else {  // device -> host, converting on the host
      dst.copy_from(to_host(src));
    }
  }
  void accumulate(Tensor& dst, const Tensor& src) override { cuda::accumulate(dst, src); }
  void zero(Tensor& t) override { cuda::zero(t); }

 private:
  Tensor staged_;  // host-layout device copy of the last converted upload
};
}  // namespace

std::unique_ptr<Backend> make_cuda_backend(CudaOptions options) {
  Context::get().set_options(options);
  return std::make_unique<CudaBackend>();
}

void register_cuda_backend() {
  register_backend("cuda", [] { return make_cuda_backend(); });
}

}  // namespace crackseg::cuda
