// precision.hpp's rules in cuDNN's own types: what conv_core.cpp hands cuDNN for each
// precision and pass. Host-only (no device code, no GPU needed), so the cuda build's
// test_cuda_numerics checks the exact enums without a device.
#pragma once
#include <cudnn.h>

#include "kernels/cuda/precision.hpp"

namespace crackseg::cuda {

[[nodiscard]] inline MathType from_cudnn(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_TENSOR_OP_MATH: return MathType::tensor_op;
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return MathType::tensor_op_allow_conversion;
    case CUDNN_FMA_MATH: return MathType::fma;
    default: return MathType::default_math;
  }
}
[[nodiscard]] inline cudnnMathType_t to_cudnn(MathType m) {
  switch (m) {
    case MathType::tensor_op: return CUDNN_TENSOR_OP_MATH;
    case MathType::tensor_op_allow_conversion: return CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    case MathType::fma: return CUDNN_FMA_MATH;
    case MathType::default_math: return CUDNN_DEFAULT_MATH;
  }
  return CUDNN_FMA_MATH;
}
[[nodiscard]] inline cudnnDataType_t to_cudnn(DataType t) {
  return t == DataType::bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

// One pass's configuration: x/y tensor and filter descriptor type, the convolution
// descriptor's compute type, and the math type the pass runs under given what the
// heuristics reported for its algorithm.
struct CudnnPassConfig {
  cudnnDataType_t tensors, filter, compute;
  cudnnMathType_t math;
};
[[nodiscard]] inline CudnnPassConfig cudnn_config(ConvPrecision p, ConvPass pass, cudnnMathType_t reported) {
  const ConvNumerics n = conv_numerics(p, pass);
  return {to_cudnn(n.operands), to_cudnn(n.operands), to_cudnn(n.compute), to_cudnn(math_for(p, from_cudnn(reported)))};
}

}  // namespace crackseg::cuda
