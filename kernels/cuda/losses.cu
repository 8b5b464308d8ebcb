// Device kernels of the sigmoid losses (src/losses/sigmoid_losses.cpp, overlap_losses.cpp):
// one templated pass per formula computing K sums and, optionally, the gradient. Reductions
// go thread -> block (tree in shared memory) -> one final block over a fixed number of
// partials, so the summation order never depends on timing.
#include <vector>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/loss.hpp"

namespace crackseg::cuda {
namespace {

constexpr int kBlocks = 264;  // fixed: the reduction order is part of the result
constexpr int kMaxSums = 4;

__device__ inline double softplus(double x) { return fmax(x, 0.0) + log1p(exp(-fabs(x))); }
__device__ inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  const double e = exp(x);
  return e / (1.0 + e);
}

// g(x, y, acc) per pass; returns d(loss)/dx before scaling. Parameters a..e per pass:
//   bce            a=w0 b=w1 c=1/M         sums {weighted loss, bce}
//   focal          a=gamma b=a0 c=a1       sums {focal, bce}
//   sum_y                                  sums {y}
//   overlap_stats                          sums {p y, p, y, bce}
//   dice_grad      a=num b=den c=1/den^2 d=dice_w e=bce_w/M
//   f1_grad        a=1/num b=1/den
//   pseudo_f1_grad a=w0 b=w1
__device__ inline double element(const SigmoidPassArgs& p, double x, double y, double* acc) {
  switch (p.pass) {
    case SigmoidPass::bce: {
      const double sn = softplus(-x), sp = softplus(x);
      acc[0] += p.b * y * sn + p.a * (1 - y) * sp;
      acc[1] += y * sn + (1 - y) * sp;
      const double s = sigmoid(x);
      return (p.b * y * (s - 1) + p.a * (1 - y) * s) * p.c;
    }
    case SigmoidPass::focal: {
      const double s = sigmoid(x), q = sigmoid(-x);
      const double log_p = -softplus(-x), log_q = -softplus(x);
      const double qg = pow(q, p.a), pg = pow(s, p.a);
      acc[0] += -p.c * y * qg * log_p - p.b * (1 - y) * pg * log_q;
      acc[1] += -y * log_p - (1 - y) * log_q;
      return p.c * y * qg * (p.a * s * log_p - q) + p.b * (1 - y) * pg * (s - p.a * q * log_q);
    }
    case SigmoidPass::sum_y:
      acc[0] += y;
      return 0.0;
    case SigmoidPass::overlap_stats: {
      const double s = sigmoid(x);
      acc[0] += s * y;
      acc[1] += s;
      acc[2] += y;
      acc[3] += y * softplus(-x) + (1 - y) * softplus(x);
      return 0.0;
    }
    case SigmoidPass::dice_grad: {
      const double s = sigmoid(x), q = sigmoid(-x);
      const double dl_dp = -(2 * y * p.b - p.a) * p.c;
      return p.d * dl_dp * s * q + p.e * (s - y);
    }
    case SigmoidPass::f1_grad: {
      const double s = sigmoid(x), q = sigmoid(-x);
      return (p.b - 2 * y * p.a) * s * q;
    }
    case SigmoidPass::pseudo_f1_grad: {
      const double s = sigmoid(x);
      return y * (s - 1) * p.b + (1 - y) * s * p.a;
    }
  }
  return 0.0;
}

__global__ void k_sigmoid_pass(SigmoidPassArgs p, const float* x, const float* y, float* dx, int64_t count,
                               int num_sums, double* partial) {
  double acc[kMaxSums] = {0, 0, 0, 0};
  CRACKSEG_GRID_STRIDE(i, count) {
    const double g = element(p, x[i], y[i], acc);
    if (dx) dx[i] = static_cast<float>(p.scale * g);
  }
  __shared__ double sh[kMaxSums][kThreads];
  for (int k = 0; k < num_sums; ++k) sh[k][threadIdx.x] = acc[k];
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (threadIdx.x < step)
      for (int k = 0; k < num_sums; ++k) sh[k][threadIdx.x] += sh[k][threadIdx.x + step];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int k = 0; k < num_sums; ++k) partial[k * kBlocks + blockIdx.x] = sh[k][0];
}

// One block: partial (num_sums x kBlocks) -> out (num_sums), fixed order.
__global__ void k_final_sum(const double* partial, int num_sums, int blocks, double* out) {
  __shared__ double sh[kThreads];
  for (int k = 0; k < num_sums; ++k) {
    double a = 0;
    for (int b = threadIdx.x; b < blocks; b += blockDim.x) a += partial[k * blocks + b];
    sh[threadIdx.x] = a;
    __syncthreads();
    for (int step = kThreads / 2; step > 0; step /= 2) {
      if (threadIdx.x < step) sh[threadIdx.x] += sh[threadIdx.x + step];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[k] = sh[0];
    __syncthreads();
  }
}

// Per pixel: softmax over C, CE against the target, gradient. Sums {CE, invalid labels}.
__global__ void k_softmax_ce(SoftmaxCeArgs a, const float* x, const float* t, float* dx, double* partial) {
  double acc[2] = {0, 0};
  const int64_t pixels = a.n * a.s;
  const double inv_p = 1.0 / static_cast<double>(pixels);
  CRACKSEG_GRID_STRIDE(pix, pixels) {
    const int64_t n = pix / a.s, sp = pix % a.s;
    const int64_t base = n * a.sn + sp * a.ss;
    double zmax = -INFINITY;
    for (int64_t c = 0; c < a.c; ++c) zmax = fmax(zmax, static_cast<double>(x[base + c * a.sc]));
    double z = 0;
    for (int64_t c = 0; c < a.c; ++c) z += exp(static_cast<double>(x[base + c * a.sc]) - zmax);
    const double lse = zmax + log(z);
    int64_t label = -1;
    if (a.index_target) {
      const double v = t[n * a.s + sp];
      label = llround(v);
      if (!(label >= 0 && label < a.c && fabs(v - static_cast<double>(label)) < 1e-6)) {
        acc[1] += 1;
        label = label < 0 ? 0 : (label >= a.c ? a.c - 1 : label);
      }
    }
    for (int64_t c = 0; c < a.c; ++c) {
      const double zc = x[base + c * a.sc];
      const double tc = a.index_target ? (c == label ? 1.0 : 0.0) : static_cast<double>(t[base + c * a.sc]);
      acc[0] += tc * (lse - zc);
      dx[base + c * a.sc] = static_cast<float>(a.scale * inv_p * (exp(zc - lse) - tc));
    }
  }
  __shared__ double sh[2][kThreads];
  sh[0][threadIdx.x] = acc[0];
  sh[1][threadIdx.x] = acc[1];
  __syncthreads();
  for (int step = kThreads / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) {
      sh[0][threadIdx.x] += sh[0][threadIdx.x + step];
      sh[1][threadIdx.x] += sh[1][threadIdx.x + step];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = sh[0][0];
    partial[kBlocks + blockIdx.x] = sh[1][0];
  }
}

// Partials and final sums live in one scratch allocation per process (kMaxSums x kBlocks
// doubles, plus kMaxSums results): allocated once, so a steady-state step allocates nothing.
struct Scratch {
  DevicePtr partial{sizeof(double) * kMaxSums * kBlocks};
  DevicePtr out{sizeof(double) * kMaxSums};
};
Scratch& scratch() {
  static Scratch* s = new Scratch();  // never destroyed, like the Context
  return *s;
}

void finish(int num_sums, double* sums) {
  auto& ctx = Context::get();
  auto& s = scratch();
  k_final_sum<<<1, kThreads, 0, ctx.stream()>>>(s.partial.as<double>(), num_sums, kBlocks, s.out.as<double>());
  CRACKSEG_CUDA_CHECK_LAUNCH("loss final sum");
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(sums, s.out.get(), sizeof(double) * num_sums, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
}

}  // namespace

void sigmoid_loss_pass(const SigmoidPassArgs& args, const float* logits, const float* target, float* dlogits,
                       int64_t count, double* sums, int num_sums) {
  if (num_sums < 0 || num_sums > kMaxSums) throw Error("sigmoid_loss_pass: num_sums out of range");
  auto& ctx = Context::get();
  k_sigmoid_pass<<<kBlocks, kThreads, 0, ctx.stream()>>>(args, logits, target, dlogits, count, num_sums,
                                                         scratch().partial.as<double>());
  CRACKSEG_CUDA_CHECK_LAUNCH("sigmoid_loss_pass");
  if (num_sums > 0) finish(num_sums, sums);
}

void softmax_ce_pass(const SoftmaxCeArgs& args, const float* logits, const float* target, float* dlogits,
                     double* sums) {
  auto& ctx = Context::get();
  k_softmax_ce<<<kBlocks, kThreads, 0, ctx.stream()>>>(args, logits, target, dlogits, scratch().partial.as<double>());
  CRACKSEG_CUDA_CHECK_LAUNCH("softmax_ce_pass");
  finish(2, sums);
}

}  // namespace crackseg::cuda
