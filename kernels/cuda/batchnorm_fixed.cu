// Batchnorm backward with fixed statistics (inference mode; cuDNN's backward assumes batch
// statistics), the training batch's statistics and the running-statistics update. One block
// per channel reduces over the M rows in a fixed order, so the results are deterministic.
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

// Sum of v over the block's threads (all kThreads of them), in a fixed tree order.
__device__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) sh[threadIdx.x] += sh[threadIdx.x + step];
    __syncthreads();
  }
  const double total = sh[0];
  __syncthreads();  // sh is reused by the next call
  return total;
}

__global__ void k_bn_batch_stats(const float* x, int64_t rows, int64_t channels, float var_factor, float* out) {
  const int64_t c = blockIdx.x;
  __shared__ double sh[kThreads];
  double s = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += x[r * channels + c];
  const double mean = block_sum(s, sh) / static_cast<double>(rows);
  double q = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const double d = x[r * channels + c] - mean;
    q += d * d;
  }
  const double biased = block_sum(q, sh) / static_cast<double>(rows);
  if (threadIdx.x == 0) {
    out[c] = static_cast<float>(mean);
    out[channels + c] = static_cast<float>(biased * var_factor);
  }
}

__global__ void k_bn_running_update(const float* stats, int64_t channels, double m, float* rm, float* rv) {
  CRACKSEG_GRID_STRIDE(c, channels) {
    rm[c] = static_cast<float>((1.0 - m) * rm[c] + m * stats[c]);
    rv[c] = static_cast<float>((1.0 - m) * rv[c] + m * stats[channels + c]);
  }
}

}  // namespace

void batchnorm_batch_stats(const float* x, int64_t rows, int64_t channels, float var_factor, float* out) {
  if (channels == 0 || rows == 0) return;
  k_bn_batch_stats<<<static_cast<unsigned>(channels), kThreads, 0, Context::get().stream()>>>(x, rows, channels,
                                                                                                var_factor, out);
  CRACKSEG_CUDA_CHECK_LAUNCH("batchnorm_batch_stats");
}

void batchnorm_running_update(const float* stats, int64_t channels, float momentum, float* running_mean,
                              float* running_var) {
  if (channels == 0) return;
  k_bn_running_update<<<grid_for(channels), kThreads, 0, Context::get().stream()>>>(
      stats, channels, static_cast<double>(momentum), running_mean, running_var);
  CRACKSEG_CUDA_CHECK_LAUNCH("batchnorm_running_update");
}

void batchnorm_fixed_backward(const float* x, const float* dy, const float* scale, const float* mean,
                              const float* var, float eps, int64_t rows, int64_t channels, float* dx,
                              float* dscale, float* dshift) {
  if (channels == 0) return;
  k_bn_fixed_bwd<<<static_cast<unsigned>(channels), kThreads, 0, Context::get().stream()>>>(
      x, dy, scale, mean, var, eps, rows, channels, dx, dscale, dshift);
  CRACKSEG_CUDA_CHECK_LAUNCH("batchnorm_fixed_backward");
}

}  // namespace crackseg::cuda
