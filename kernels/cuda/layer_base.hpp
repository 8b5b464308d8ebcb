// Common state of every CUDA layer: spec, node name, parameters on the device (plain layout,
// zeroed; Graph::instantiate uploads the initial values) and descriptor helpers.
// Activations are NHWC (see docs/GPU.md); 2-D activations (N, F) are plain.
#pragma once
#include <string>
#include <vector>

#include "kernels/cuda/context.hpp"
#include "src/graph/layer.hpp"
#include "src/layers/shapes.hpp"

namespace crackseg::cuda {

class CudaLayer : public Layer {
 public:
  CudaLayer(const LayerSpec& spec, std::string name);
  [[nodiscard]] const LayerSpec& spec() const override { return spec_; }
  [[nodiscard]] Dims output_dims(std::span<const Dims> in) const override {
    return infer_output_dims(spec_, in, name_);
  }
  [[nodiscard]] std::vector<Param*> params() override;
  [[nodiscard]] const std::string& name() const { return name_; }

 protected:
  template <class S>
  [[nodiscard]] const S& as() const { return std::get<S>(spec_); }
  // Throws naming this layer unless `t` is a f32 cuda tensor laid out as this backend
  // expects (4-D: nhwc, or a shape where nchw and nhwc coincide).
  void expect_input(const Tensor& t, const char* role) const;
  LayerSpec spec_;
  std::string name_;
  std::vector<Param> params_;
  Context& ctx_;
};

// cuDNN takes int dimensions; throws naming `what` when a value does not fit.
[[nodiscard]] int to_int(int64_t v, const std::string& what);
// 4-D (N, C, H, W) -> NHWC descriptor; 2-D (N, F) -> (N, F, 1, 1), where NHWC and NCHW agree.
// `type`: the element type (CUDNN_DATA_BFLOAT16 for a bf16 convolution's operands).
void set_activation_desc(cudnnTensorDescriptor_t d, const Dims& dims, const std::string& what,
                         cudnnDataType_t type = CUDNN_DATA_FLOAT);
// (1, 1, 1, count): for elementwise ops, where layout does not matter.
void set_flat_desc(cudnnTensorDescriptor_t d, int64_t count, const std::string& what);
// (1, C, 1, 1) per-channel vector (bias, batchnorm statistics).
void set_channel_desc(cudnnTensorDescriptor_t d, int64_t channels, const std::string& what);

inline constexpr float kOne = 1.0f, kZero = 0.0f;

}  // namespace crackseg::cuda
