#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nccl_comm.hpp"

namespace crackseg::cuda {
namespace {
__global__ void k_sum_ranks(const float* g, int ranks, int64_t count, float* out) {
  CRACKSEG_GRID_STRIDE(i, count) {
    float s = g[i];
    for (int r = 1; r < ranks; ++r) s += g[static_cast<int64_t>(r) * count + i];
    out[i] = s;
  }
}
}  // namespace

void sum_ranks_in_order(const float* gathered, int ranks, std::size_t count, float* out, cudaStream_t stream) {
  if (count == 0) return;
  const auto n = static_cast<int64_t>(count);
  k_sum_ranks<<<grid_for(n), kThreads, 0, stream>>>(gathered, ranks, n, out);
  CRACKSEG_CUDA_CHECK_LAUNCH("sum_ranks_in_order");
}

}  // namespace crackseg::cuda
