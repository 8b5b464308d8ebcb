#include <cmath>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optim.hpp"

namespace crackseg::cuda {
namespace {

__global__ void k_adam(AdamArgs a, float bc1, float bc2_sqrt, float* w, const float* grad, float* m, float* v,
                       int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) {
    float g = a.grad_scale * grad[i];
    float wi = w[i];
    if (a.decoupled)
      wi -= a.lr * a.weight_decay * wi;
    else if (a.weight_decay != 0.0f)
      g += a.weight_decay * wi;
    const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
    const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - a.lr * (mi / bc1) / (sqrtf(vi) / bc2_sqrt + a.eps);
  }
}

__global__ void k_sgd(SgdArgs a, float* w, const float* grad, float* buf, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) {
    float g = a.grad_scale * grad[i];
    if (a.weight_decay != 0.0f) g += a.weight_decay * w[i];
    float step = g;
    if (a.momentum != 0.0f) {
      const float b = a.first_step ? g : a.momentum * buf[i] + g;
      buf[i] = b;
      step = a.nesterov ? g + a.momentum * b : b;
    }
    w[i] -= a.lr * step;
  }
}

__global__ void k_scale(float* x, float s, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) x[i] *= s;
}

constexpr int kBlocks = 264;
__global__ void k_sumsq(const float* x, int64_t count, double* partial) {
  double acc = 0;
  CRACKSEG_GRID_STRIDE(i, count) acc += static_cast<double>(x[i]) * x[i];
  __shared__ double sh[kThreads];
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) sh[threadIdx.x] += sh[threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sh[0];
}

}  // namespace

void adam_update(const AdamArgs& a, float* w, const float* grad, float* m, float* v, int64_t count) {
  if (count == 0) return;
  if (a.step < 1) throw Error("adam_update: step must start at 1, got " + std::to_string(a.step));
  const double t = static_cast<double>(a.step);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(a.beta1), t));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(a.beta2), t)));
  k_adam<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(a, bc1, bc2_sqrt, w, grad, m, v, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("adam_update");
}

void sgd_update(const SgdArgs& a, float* w, const float* grad, float* buf, int64_t count) {
  if (count == 0) return;
  k_sgd<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(a, w, grad, buf, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("sgd_update");
}

void scale_in_place(float* x, float scale, int64_t count) {
  if (count == 0) return;
  k_scale<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(x, scale, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("scale_in_place");
}

double sum_of_squares(const float* x, int64_t count) {
  auto& ctx = Context::get();
  static DevicePtr* partial = new DevicePtr(sizeof(double) * kBlocks);  // once per process
  k_sumsq<<<kBlocks, kThreads, 0, ctx.stream()>>>(x, count, partial->as<double>());
  CRACKSEG_CUDA_CHECK_LAUNCH("sum_of_squares");
  double host[kBlocks];
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(host, partial->get(), sizeof(host), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  double s = 0;
  for (double h : host) s += h;  // fixed order
  return s;
}

}  // namespace crackseg::cuda
