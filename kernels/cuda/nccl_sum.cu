#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/nccl_comm.hpp"

namespace crackseg::cuda {
namespace {
__global__ void k_sum_slots(const float* in, const int64_t* order, int64_t slots, int64_t count, float* out) {
  CRACKSEG_GRID_STRIDE(e, count) {
    double acc = 0.0;
    for (int64_t g = 0; g < slots; ++g) acc += static_cast<double>(in[order[g] * count + e]);
    out[e] = static_cast<float>(acc);
  }
}
}  // namespace

void sum_slots_in_order(const float* in, const int64_t* slot_order, int64_t slots, int64_t count, float* out,
                        cudaStream_t stream) {
  if (count == 0) return;
  k_sum_slots<<<grid_for(count), kThreads, 0, stream>>>(in, slot_order, slots, count, out);
  CRACKSEG_CUDA_CHECK_LAUNCH("sum_slots_in_order");
}

}  // namespace crackseg::cuda
