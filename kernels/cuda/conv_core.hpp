// One cuDNN convolution geometry and its three algorithms, shared by conv2d and
// conv_transpose2d (a transposed conv is the adjoint: its forward is this geometry's
// backward-data, its backward-data this geometry's forward).
//
//   x (N, C, H, W) nhwc  --conv w (K, C, R, S), stored KRSC (cuDNN's NHWC filter)-->  y (N, K, P, Q) nhwc
//
// Algorithms come from cuDNN's v7 heuristics, filtered by the workspace limit and, in
// deterministic mode, by CUDNN_DETERMINISTIC; the choice is cached per geometry and
// numerics (process-wide, so layers of the same shape share it). The workspace is the
// context's one shared buffer, grown in plan() to the largest need: every convolution runs
// in program order on the one compute stream, so they can all use the same memory (one
// buffer of the largest size instead of one per layer, up to 1 GiB each).
//
// Precision (Context::conv_precision, train.precision; rules in precision.hpp): fp32 (FMA
// math only), tf32 (tensor-op math where the heuristics offer it) or bf16. In bf16 the
// descriptors are bf16 with an fp32 compute type (cuDNN's PSEUDO_BFLOAT16 configuration,
// tensor-op math) and the fp32 pointers the layers pass are rounded here: the kept operand
// (the layer's input, KeptOperand) into this layer's buffer in forward, read again by the
// weight gradient; the weights into this layer's buffer in weights_changed(); the other
// operand into the context's shared `in` buffer. cuDNN writes each pass's result in bf16
// (its legacy API has no bf16-in / fp32-out configuration) into the shared `out` buffer,
// widened into the fp32 destination. The layers see fp32 tensors only; x_desc()/y_desc()
// stay fp32 descriptors (bias, batchnorm). A geometry for which cuDNN offers no bf16
// algorithm for some pass stays fp32 (counted in Context::bf16_fallbacks), as on the CPU.
#pragma once
#include <string>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/precision.hpp"
#include "src/tensor/tensor.hpp"

namespace crackseg::cuda {

struct ConvAlgos {
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
  std::size_t workspace = 0;  // the largest of the three
};

class ConvCore {
 public:
  // `what` names the layer for messages. y must equal the geometry's output shape. `kept`:
  // which operand is the layer's input (bf16: rounded in forward, kept for backward_filter).
  void plan(const Dims& x, const Dims& w, const Dims& y, int64_t padding, int64_t stride, int64_t dilation,
            KeptOperand kept, const std::string& what);
  // The fp32 KRSC weights changed (the layers call it from params_changed): bf16 rounds them
  // into this layer's copy, which the passes then read (their `w` argument is rounded only
  // when the copy is stale: re-planned into bf16 after the last change).
  void weights_changed(const float* w);
  void forward(const float* x, const float* w, float* y, float beta);
  void backward_data(const float* dy, const float* w, float* dx, float beta);
  // bf16: the kept operand is read from this layer's copy rounded by this step's forward
  // (the Graph runs a layer's forward before its backward in every step).
  void backward_filter(const float* x, const float* dy, float* dw, float beta);
  [[nodiscard]] cudnnTensorDescriptor_t x_desc() const { return x_.get(); }
  [[nodiscard]] cudnnTensorDescriptor_t y_desc() const { return y_.get(); }
  [[nodiscard]] const ConvAlgos& algos() const { return algos_; }
  [[nodiscard]] ConvPrecision precision() const { return precision_; }

 private:
  [[nodiscard]] bool bf16() const { return precision_ == ConvPrecision::bf16; }
  // Descriptors and algorithms for `prec`; throws when cuDNN has no algorithm for a pass.
  void configure(ConvPrecision prec, const Dims& x, const Dims& w, const Dims& y, int64_t padding, int64_t stride,
                 int64_t dilation, const std::string& what);
  // The bf16 copy of `src` (count elements) for the operand `role` of this geometry.
  [[nodiscard]] const uint16_t* bf16_operand(const float* src, KeptOperand role, int64_t count);
  [[nodiscard]] const void* bf16_weights(const float* w);
  TensorDesc x_, y_;    // fp32, what the layers' own cuDNN calls use
  TensorDesc xc_, yc_;  // the convolution's: bf16 in bf16 mode, else the same as x_, y_
  FilterDesc w_;
  ConvDesc conv_;
  ConvAlgos algos_;
  ConvPrecision precision_ = ConvPrecision::fp32;
  KeptOperand kept_ = KeptOperand::x;
  int64_t count_x_ = 0, count_w_ = 0, count_y_ = 0;
  DevicePtr kept_lp_, w_lp_;  // bf16 only: the layer's input and weights
  bool w_lp_valid_ = false;   // w_lp_ holds the current weights
  bool counted_ = false;      // in Context::bf16_layers / bf16_fallbacks
};

}  // namespace crackseg::cuda
