// Layer specifications: plain values that say what a layer is, independent of backend.
// Models are graphs of specs (src/models); a Backend (src/graph/backend.hpp) turns each spec
// into a Layer that runs on its device. Parameter counts come from specs alone, so
// `crackseg models` needs no weights.
#pragma once
#include <cstdint>
#include <string>
#include <variant>

namespace crackseg {

enum class Init : uint8_t {
  he_normal,       // Kaiming normal, fan_in, gain sqrt(2) (ReLU family convs)
  he_uniform,      // Kaiming uniform, fan_in
  glorot_uniform,  // Xavier uniform (transposed convs, linear where the originals used it)
  zeros,
};

struct Conv2dSpec {
  int64_t in_c = 0, out_c = 0;
  int64_t kernel = 3, stride = 1, padding = 0, dilation = 1;
  bool bias = true;
  Init init = Init::he_normal;
};
struct ConvTranspose2dSpec {
  int64_t in_c = 0, out_c = 0;
  int64_t kernel = 2, stride = 2, padding = 0, output_padding = 0;
  bool bias = true;
  Init init = Init::glorot_uniform;
};
struct MaxPool2dSpec {
  int64_t kernel = 2, stride = 2, padding = 0;
};
struct BatchNorm2dSpec {
  int64_t channels = 0;
  float eps = 1e-5f;
  float momentum = 0.1f;  // running = (1 - momentum) * running + momentum * batch
};
struct ReluSpec {};
struct LeakyReluSpec {
  float slope = 0.01f;
};
struct SigmoidSpec {};
struct SoftmaxSpec {};  // over channels
struct DropoutSpec {
  float p = 0.5f;  // drop probability; masks from SampleRng keyed by sample (Purpose::dropout)
};
struct LinearSpec {
  int64_t in_f = 0, out_f = 0;
  bool bias = true;
  Init init = Init::glorot_uniform;
};
struct FlattenSpec {};  // (N, C, H, W) -> (N, C*H*W) in (c, h, w) order
struct ConcatSpec {};   // along channels, inputs in edge order
struct AddSpec {};      // elementwise sum of all inputs

using LayerSpec = std::variant<Conv2dSpec, ConvTranspose2dSpec, MaxPool2dSpec, BatchNorm2dSpec, ReluSpec,
                               LeakyReluSpec, SigmoidSpec, SoftmaxSpec, DropoutSpec, LinearSpec,
                               FlattenSpec, ConcatSpec, AddSpec>;

// Trainable parameters (weights, biases, batchnorm scale and shift; not running statistics).
[[nodiscard]] int64_t param_count(const LayerSpec& spec);
[[nodiscard]] std::string kind_name(const LayerSpec& spec);  // "conv2d", "batchnorm2d", ...

}  // namespace crackseg
