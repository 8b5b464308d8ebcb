#include <algorithm>

#include "kernels/cuda/context.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/launch.cuh"

namespace crackseg::cuda {
namespace {
// Up to 8 input pointers travel by value; more inputs accumulate in chunks of 8.
struct Inputs {
  const float* p[8];
  int n;
};
__global__ void k_add_n(Inputs in, float* out, int64_t count, bool accumulate) {
  CRACKSEG_GRID_STRIDE(i, count) {
    double acc = accumulate ? out[i] : 0.0;
    for (int k = 0; k < in.n; ++k) acc += in.p[k][i];
    out[i] = static_cast<float>(acc);
  }
}
}  // namespace

void add_n(const float* const* inputs, int num_inputs, float* out, int64_t count) {
  if (count == 0) return;
  for (int first = 0; first < num_inputs; first += 8) {
    Inputs in{};
    in.n = std::min(8, num_inputs - first);
    for (int k = 0; k < in.n; ++k) in.p[k] = inputs[first + k];
    k_add_n<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(in, out, count, first > 0);
    CRACKSEG_CUDA_CHECK_LAUNCH("add_n");
  }
}

}  // namespace crackseg::cuda
