#include "kernels/cuda/bf16_ops.hpp"
#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/precision.hpp"

namespace crackseg::cuda {

namespace {

__global__ void k_round_to_bf16(const float* src, uint16_t* dst, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) dst[i] = bf16_bits(src[i]);
}
__global__ void k_widen_bf16(const uint16_t* src, float* dst, int64_t count, float beta) {
  CRACKSEG_GRID_STRIDE(i, count) {
    const float v = bf16_to_f32(src[i]);
    dst[i] = beta == 0.0f ? v : v + beta * dst[i];
  }
}

}  // namespace

void round_to_bf16(const float* src, uint16_t* dst, int64_t count) {
  if (count == 0) return;
  k_round_to_bf16<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(src, dst, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("round_to_bf16");
}

void widen_bf16(const uint16_t* src, float* dst, int64_t count, float beta) {
  if (count == 0) return;
  k_widen_bf16<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(src, dst, count, beta);
  CRACKSEG_CUDA_CHECK_LAUNCH("widen_bf16");
}

}  // namespace crackseg::cuda
