// The oneDNN CPU backend: nhwc activations, one engine + stream per backend instance,
// threads from oneDNN's OpenMP runtime (OMP_NUM_THREADS).
#include "kernels/cpu/dnnl_common.hpp"

namespace crackseg {

namespace {
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

class OnednnBackend final : public Backend {
 public:
  OnednnBackend() : ctx_(std::make_shared<onednn::Context>()) {}
  std::string name() const override { return "onednn"; }
  Device device() const override { return Device::cpu; }
  Format activation_format() const override { return Format::nhwc; }
  std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) override {
    using namespace onednn;
    auto c = ctx_;
    return std::visit(overloaded{
                          [&](const Conv2dSpec&) { return make_conv2d(spec, name, c); },
                          [&](const ConvTranspose2dSpec&) { return make_conv_transpose2d(spec, name, c); },
                          [&](const MaxPool2dSpec&) { return make_maxpool2d(spec, name, c); },
                          [&](const BatchNorm2dSpec&) { return make_batchnorm2d(spec, name, c); },
                          [&](const ReluSpec&) { return make_eltwise(spec, name, c); },
                          [&](const LeakyReluSpec&) { return make_eltwise(spec, name, c); },
                          [&](const SigmoidSpec&) { return make_eltwise(spec, name, c); },
                          [&](const SoftmaxSpec&) { return make_softmax(spec, name, c); },
                          [&](const DropoutSpec&) { return make_dropout(spec, name, c); },
                          [&](const LinearSpec&) { return make_linear(spec, name, c); },
                          [&](const FlattenSpec&) { return make_flatten(spec, name, c); },
                          [&](const ConcatSpec&) { return make_concat(spec, name, c); },
                          [&](const AddSpec&) { return make_add(spec, name, c); },
                      },
                      spec);
  }

 private:
  std::shared_ptr<onednn::Context> ctx_;
};
}  // namespace

std::unique_ptr<Backend> make_onednn_backend() {
  try {
    return std::make_unique<OnednnBackend>();
  } catch (const dnnl::error& e) {
    detail::rethrow_dnnl(e, "dnnl::engine(cpu, 0) / dnnl::stream");
  }
}

}  // namespace crackseg
