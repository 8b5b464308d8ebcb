// The reference backend: one class per op in this folder, NCHW or NHWC activations.
#include "kernels/reference/ref_layers.hpp"

namespace crackseg {

namespace {
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};

class ReferenceBackend final : public Backend {
 public:
  explicit ReferenceBackend(Format f) : format_(f) {}
  std::string name() const override { return format_ == Format::nhwc ? "reference-nhwc" : "reference"; }
  Device device() const override { return Device::cpu; }
  Format activation_format() const override { return format_; }
  std::unique_ptr<Layer> make_layer(const LayerSpec& spec, const std::string& name) override {
    using namespace reference;
    return std::visit(overloaded{
                          [&](const Conv2dSpec&) { return make_conv2d(spec, name); },
                          [&](const ConvTranspose2dSpec&) { return make_conv_transpose2d(spec, name); },
                          [&](const MaxPool2dSpec&) { return make_maxpool2d(spec, name); },
                          [&](const BatchNorm2dSpec&) { return make_batchnorm2d(spec, name); },
                          [&](const ReluSpec&) { return make_eltwise(spec, name); },
                          [&](const LeakyReluSpec&) { return make_eltwise(spec, name); },
                          [&](const SigmoidSpec&) { return make_eltwise(spec, name); },
                          [&](const SoftmaxSpec&) { return make_softmax(spec, name); },
                          [&](const DropoutSpec&) { return make_dropout(spec, name); },
                          [&](const LinearSpec&) { return make_linear(spec, name); },
                          [&](const FlattenSpec&) { return make_flatten(spec, name); },
                          [&](const ConcatSpec&) { return make_concat(spec, name); },
                          [&](const AddSpec&) { return make_add(spec, name); },
                      },
                      spec);
  }

 private:
  Format format_;
};
}  // namespace

std::unique_ptr<Backend> make_reference_backend(Format activation_format) {
  return std::make_unique<ReferenceBackend>(activation_format);
}

}  // namespace crackseg
