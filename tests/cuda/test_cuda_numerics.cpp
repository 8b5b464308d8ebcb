// ctest-labels: cuda
// ctest-link: crackseg_cuda
// What the cuda backend hands cuDNN for each train.precision and convolution pass
// (kernels/cuda/cudnn_numerics.hpp, the enums conv_core.cpp uses), checked in cuDNN's own
// types. Needs no GPU (it runs wherever the cuda preset builds): fp32 = float tensors and
// compute, FMA math (never DEFAULT, which allows TF32 on Ampere+); tf32 = float tensors and
// compute, the heuristics' math; bf16 = BFLOAT16 tensors and filter, FLOAT compute (cuDNN's
// PSEUDO_BFLOAT16 configuration), TENSOR_OP math, for forward, backward-data and
// backward-filter alike.
#include <gtest/gtest.h>

#include "kernels/cuda/cudnn_numerics.hpp"

using namespace crackseg::cuda;

TEST(CudaNumerics, EachPrecisionAndPass) {
  for (ConvPass pass : {ConvPass::forward, ConvPass::backward_data, ConvPass::backward_filter}) {
    for (cudnnMathType_t reported : {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_FMA_MATH}) {
      const CudnnPassConfig f = cudnn_config(ConvPrecision::fp32, pass, reported);
      EXPECT_EQ(f.tensors, CUDNN_DATA_FLOAT);
      EXPECT_EQ(f.filter, CUDNN_DATA_FLOAT);
      EXPECT_EQ(f.compute, CUDNN_DATA_FLOAT);
      EXPECT_EQ(f.math, CUDNN_FMA_MATH);
      const CudnnPassConfig t = cudnn_config(ConvPrecision::tf32, pass, reported);
      EXPECT_EQ(t.tensors, CUDNN_DATA_FLOAT);
      EXPECT_EQ(t.compute, CUDNN_DATA_FLOAT);
      EXPECT_EQ(t.math, reported);
      const CudnnPassConfig b = cudnn_config(ConvPrecision::bf16, pass, reported);
      EXPECT_EQ(b.tensors, CUDNN_DATA_BFLOAT16);
      EXPECT_EQ(b.filter, CUDNN_DATA_BFLOAT16);
      EXPECT_EQ(b.compute, CUDNN_DATA_FLOAT);
      EXPECT_EQ(b.math, CUDNN_TENSOR_OP_MATH);
    }
  }
}

TEST(CudaNumerics, MathTypesRoundTrip) {
  for (cudnnMathType_t m :
       {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, CUDNN_FMA_MATH})
    EXPECT_EQ(to_cudnn(from_cudnn(m)), m);
  // ALLOW_CONVERSION (fp16 inside cuDNN) is never acceptable, whatever the precision.
  for (ConvPrecision p : {ConvPrecision::fp32, ConvPrecision::tf32, ConvPrecision::bf16})
    EXPECT_FALSE(algo_acceptable(p, true, 0, 1, false, true, from_cudnn(CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)));
}
