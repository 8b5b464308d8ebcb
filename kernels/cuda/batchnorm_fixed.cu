// Batchnorm backward with fixed statistics (inference mode; cuDNN's backward assumes batch
// statistics). One block per channel reduces over the M rows in a fixed order, so the
// result is deterministic.
#include "kernels/cuda/context.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/launch.cuh"

namespace crackseg::cuda {
namespace {

__global__ void k_bn_fixed_bwd(const float* x, const float* dy, const float* scale, const float* mean,
                               const float* var, float eps, int64_t rows, int64_t channels, float* dx,
                               float* dscale, float* dshift) {
  const int64_t c = blockIdx.x;
  const double inv = rsqrt(static_cast<double>(var[c]) + eps);
  double s_dy = 0, s_dyx = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int64_t o = r * channels + c;
    const double g = dy[o];
    s_dy += g;
    s_dyx += g * (x[o] - mean[c]) * inv;
    if (dx) dx[o] = static_cast<float>(g * scale[c] * inv);
  }
  __shared__ double sh_dy[kThreads], sh_dyx[kThreads];
  sh_dy[threadIdx.x] = s_dy;
  sh_dyx[threadIdx.x] = s_dyx;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) {
      sh_dy[threadIdx.x] += sh_dy[threadIdx.x + step];
      sh_dyx[threadIdx.x] += sh_dyx[threadIdx.x + step];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    dscale[c] += static_cast<float>(sh_dyx[0]);
    dshift[c] += static_cast<float>(sh_dy[0]);
  }
}

}  // namespace

void batchnorm_fixed_backward(const float* x, const float* dy, const float* scale, const float* mean,
                              const float* var, float eps, int64_t rows, int64_t channels, float* dx,
                              float* dscale, float* dshift) {
  if (channels == 0) return;
  k_bn_fixed_bwd<<<static_cast<unsigned>(channels), kThreads, 0, Context::get().stream()>>>(
      x, dy, scale, mean, var, eps, rows, channels, dx, dscale, dshift);
  CRACKSEG_CUDA_CHECK_LAUNCH("batchnorm_fixed_backward");
}

}  // namespace crackseg::cuda
