#include <cmath>
#include <limits>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/metrics.hpp"

namespace crackseg::cuda {
namespace {

// grid (blocks per item, N): block-local counts in shared memory, one atomic per block.
__global__ void k_confusion(const float* x, const float* y, int64_t per_item, double cut,
                            unsigned long long* counts) {
  __shared__ unsigned long long sh[4];
  if (threadIdx.x < 4) sh[threadIdx.x] = 0;
  __syncthreads();
  const int64_t n = blockIdx.y;
  unsigned long long local[4] = {0, 0, 0, 0};  // tp, fp, fn, tn
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < per_item;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const bool pred = static_cast<double>(x[n * per_item + i]) >= cut;
    const bool truth = y[n * per_item + i] > 0.5f;
    ++local[pred ? (truth ? 0 : 1) : (truth ? 2 : 3)];
  }
  for (int k = 0; k < 4; ++k)
    if (local[k]) atomicAdd(&sh[k], local[k]);
  __syncthreads();
  if (threadIdx.x < 4 && sh[threadIdx.x]) atomicAdd(&counts[n * 4 + threadIdx.x], sh[threadIdx.x]);
}

}  // namespace

std::vector<ConfusionCounts> confusion_counts(const Tensor& logits, const Tensor& target, double threshold) {
  if (logits.device() != Device::cuda || target.device() != Device::cuda)
    throw Error("cuda::confusion_counts: logits and target must be cuda tensors");
  if (logits.dims() != target.dims())
    throw Error("cuda::confusion_counts: logits " + to_string(logits.dims()) + " and target " +
                to_string(target.dims()) + " differ");
  if (logits.rank() == 4 && logits.c() > 1 && logits.format() != target.format())
    throw Error("cuda::confusion_counts: logits and target layouts differ");
  if (!(threshold > 0 && threshold < 1))
    throw InputError("[eval] threshold must be in (0, 1), got " + std::to_string(threshold));
  const int64_t n = logits.dim(0), per = n ? logits.numel() / n : 0;
  std::vector<ConfusionCounts> out(static_cast<std::size_t>(n));
  if (n == 0) return out;
  auto& ctx = Context::get();
  DevicePtr counts(sizeof(unsigned long long) * 4 * static_cast<std::size_t>(n));
  CRACKSEG_CUDA_CHECK(cudaMemsetAsync(counts.get(), 0, counts.bytes(), ctx.stream()));
  const double cut = std::log(threshold / (1.0 - threshold));
  const unsigned bx = std::min<unsigned>(grid_for(per), 64);
  if (n > 65535) throw Error("cuda::confusion_counts: batch of " + std::to_string(n) + " exceeds 65535 items");
  k_confusion<<<dim3(bx, static_cast<unsigned>(n)), kThreads, 0, ctx.stream()>>>(
      logits.data<float>(), target.data<float>(), per, cut, counts.as<unsigned long long>());
  CRACKSEG_CUDA_CHECK_LAUNCH("confusion_counts");
  std::vector<unsigned long long> host(4 * static_cast<std::size_t>(n));
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(host.data(), counts.get(), counts.bytes(), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  for (int64_t i = 0; i < n; ++i) {
    auto& c = out[static_cast<std::size_t>(i)];
    c.tp = static_cast<int64_t>(host[4 * i]), c.fp = static_cast<int64_t>(host[4 * i + 1]);
    c.fn = static_cast<int64_t>(host[4 * i + 2]), c.tn = static_cast<int64_t>(host[4 * i + 3]);
  }
  return out;
}

}  // namespace crackseg::cuda
