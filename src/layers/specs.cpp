#include "src/layers/specs.hpp"

namespace crackseg {

namespace {
template <class... Ts>
struct overloaded : Ts... {
  using Ts::operator()...;
};
}  // namespace

int64_t param_count(const LayerSpec& spec) {
  return std::visit(
      overloaded{
          [](const Conv2dSpec& s) { return s.out_c * s.in_c * s.kernel * s.kernel + (s.bias ? s.out_c : 0); },
          [](const ConvTranspose2dSpec& s) {
            return s.in_c * s.out_c * s.kernel * s.kernel + (s.bias ? s.out_c : 0);
          },
          [](const BatchNorm2dSpec& s) { return 2 * s.channels; },
          [](const LinearSpec& s) { return s.in_f * s.out_f + (s.bias ? s.out_f : 0); },
          [](const auto&) { return int64_t{0}; },
      },
      spec);
}

std::string kind_name(const LayerSpec& spec) {
  return std::visit(overloaded{
                        [](const Conv2dSpec&) { return "conv2d"; },
                        [](const ConvTranspose2dSpec&) { return "conv_transpose2d"; },
                        [](const MaxPool2dSpec&) { return "maxpool2d"; },
                        [](const BatchNorm2dSpec&) { return "batchnorm2d"; },
                        [](const ReluSpec&) { return "relu"; },
                        [](const LeakyReluSpec&) { return "leaky_relu"; },
                        [](const SigmoidSpec&) { return "sigmoid"; },
                        [](const SoftmaxSpec&) { return "softmax"; },
                        [](const DropoutSpec&) { return "dropout"; },
                        [](const LinearSpec&) { return "linear"; },
                        [](const FlattenSpec&) { return "flatten"; },
                        [](const ConcatSpec&) { return "concat"; },
                        [](const AddSpec&) { return "add"; },
                    },
                    spec);
}

}  // namespace crackseg
