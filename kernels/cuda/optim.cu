#include <cmath>
#include <vector>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/optim.hpp"

namespace crackseg::cuda {
namespace {

__global__ void k_adam(AdamArgs a, double step_size, double sqrt_bc2, float* w, const float* grad, float* m, float* v,
                       int64_t count) {
  CRACKSEG_GRID_STRIDE(k, count) {
    double wk = w[k], gk = grad[k];
    if (a.decoupled)
      wk -= a.lr * a.weight_decay * wk;
    else
      gk += a.weight_decay * wk;
    const double mk = a.beta1 * m[k] + (1 - a.beta1) * gk;
    const double vk = a.beta2 * v[k] + (1 - a.beta2) * gk * gk;
    m[k] = static_cast<float>(mk);
    v[k] = static_cast<float>(vk);
    w[k] = static_cast<float>(wk - step_size * mk / (sqrt(vk) / sqrt_bc2 + a.eps));
  }
}

__global__ void k_sgd(SgdArgs a, float* w, const float* grad, float* buf, int64_t count) {
  CRACKSEG_GRID_STRIDE(k, count) {
    double gk = static_cast<double>(grad[k]) + a.weight_decay * static_cast<double>(w[k]);
    if (buf) {
      const double bk = a.first_step ? gk : a.momentum * buf[k] + (1 - a.dampening) * gk;
      buf[k] = static_cast<float>(bk);
      gk = a.nesterov ? gk + a.momentum * bk : bk;
    }
    w[k] = static_cast<float>(static_cast<double>(w[k]) - a.lr * gk);
  }
}

__global__ void k_scale(float* x, double s, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) x[i] = static_cast<float>(static_cast<double>(x[i]) * s);
}
__global__ void k_clamp(float* x, float m, int64_t count) {
  CRACKSEG_GRID_STRIDE(i, count) x[i] = fminf(fmaxf(x[i], -m), m);
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
  const double bc1 = 1 - std::pow(a.beta1, t);
  const double sqrt_bc2 = std::sqrt(1 - std::pow(a.beta2, t));
  k_adam<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(a, a.lr / bc1, sqrt_bc2, w, grad, m, v, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("adam_update");
}

void sgd_update(const SgdArgs& a, float* w, const float* grad, float* buf, int64_t count) {
  if (count == 0) return;
  k_sgd<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(a, w, grad, buf, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("sgd_update");
}

void scale_in_place(float* x, double scale, int64_t count) {
  if (count == 0) return;
  k_scale<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(x, scale, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("scale_in_place");
}

void clamp_in_place(float* x, float max_abs, int64_t count) {
  if (count == 0) return;
  k_clamp<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(x, max_abs, count);
  CRACKSEG_CUDA_CHECK_LAUNCH("clamp_in_place");
}

double sum_of_squares(const float* x, int64_t count) {
  auto& ctx = Context::get();
  static DevicePtr* partial = new DevicePtr(sizeof(double) * kBlocks);  // once per process, never freed
  k_sumsq<<<kBlocks, kThreads, 0, ctx.stream()>>>(x, count, partial->as<double>());
  CRACKSEG_CUDA_CHECK_LAUNCH("sum_of_squares");
  double host[kBlocks];
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(host, partial->get(), sizeof(host), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  double s = 0;
  for (double h : host) s += h;  // fixed order
  return s;
}

double sum_of_squares_all(std::span<const float* const> xs, std::span<const int64_t> counts) {
  if (xs.size() != counts.size()) throw Error("sum_of_squares_all: " + std::to_string(xs.size()) + " arrays, " +
                                              std::to_string(counts.size()) + " counts");
  if (xs.empty()) return 0.0;
  auto& ctx = Context::get();
  static DevicePtr* partial = new DevicePtr();  // grows to the largest model; never freed
  static std::vector<double>* host = new std::vector<double>();
  const std::size_t n = sizeof(double) * kBlocks * xs.size();
  if (partial->bytes() < n) {
    ctx.synchronize();  // the old buffer is no longer read by any kernel
    partial->reserve(n);
  }
  for (std::size_t i = 0; i < xs.size(); ++i)
    k_sumsq<<<kBlocks, kThreads, 0, ctx.stream()>>>(xs[i], counts[i], partial->as<double>() + i * kBlocks);
  CRACKSEG_CUDA_CHECK_LAUNCH("sum_of_squares_all");
  host->resize(kBlocks * xs.size());
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(host->data(), partial->get(), n, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  double total = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {  // the same sums in the same order as per-array calls
    double s = 0;
    for (int b = 0; b < kBlocks; ++b) s += (*host)[i * kBlocks + static_cast<std::size_t>(b)];
    total += s;
  }
  return total;
}

}  // namespace crackseg::cuda
