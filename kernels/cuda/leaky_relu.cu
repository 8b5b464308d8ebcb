#include "kernels/cuda/context.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/launch.cuh"

namespace crackseg::cuda {
namespace {
__global__ void k_leaky_fwd(const float* x, float* y, float slope, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) {
    const float v = x[i];
    y[i] = v > 0.0f ? v : static_cast<float>(static_cast<double>(slope) * v);
  }
}
__global__ void k_leaky_bwd(const float* y, const float* dy, float* dx, float slope, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) {
    dx[i] = y[i] > 0.0f ? dy[i] : static_cast<float>(static_cast<double>(slope) * dy[i]);
  }
}
}  // namespace

void leaky_relu_forward(const float* x, float* y, float slope, int64_t count) {
  if (count == 0) return;
  k_leaky_fwd<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(x, y, slope, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("leaky_relu_forward");
}
void leaky_relu_backward(const float* y, const float* dy, float* dx, float slope, int64_t count) {
  if (count == 0) return;
  k_leaky_bwd<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(y, dy, dx, slope, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("leaky_relu_backward");
}

}  // namespace crackseg::cuda
