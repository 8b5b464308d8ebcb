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
#pragma once
#include <string>

#include "kernels/cuda/check.hpp"
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
  // `what` names the layer for messages. y must equal the geometry's output shape.
  void plan(const Dims& x, const Dims& w, const Dims& y, int64_t padding, int64_t stride, int64_t dilation,
            const std::string& what);
  void forward(const float* x, const float* w, float* y, float beta);
  void backward_data(const float* dy, const float* w, float* dx, float beta);
  void backward_filter(const float* x, const float* dy, float* dw, float beta);
  [[nodiscard]] cudnnTensorDescriptor_t x_desc() const { return x_.get(); }
  [[nodiscard]] cudnnTensorDescriptor_t y_desc() const { return y_.get(); }
  [[nodiscard]] const ConvAlgos& algos() const { return algos_; }

 private:
  TensorDesc x_, y_;
  FilterDesc w_;
  ConvDesc conv_;
  ConvAlgos algos_;
};

}  // namespace crackseg::cuda
