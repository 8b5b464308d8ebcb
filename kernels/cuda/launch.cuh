// Launch geometry shared by the .cu kernels: grid-stride loops over int64 counts with a
// capped grid, so any size works and small tensors do not launch empty blocks.
#pragma once
#include <cstdint>

namespace crackseg::cuda {

inline constexpr int kThreads = 256;
inline unsigned grid_for(int64_t count) {
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}
#define CRACKSEG_GRID_STRIDE(i, count)                                                        \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (count); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

}  // namespace crackseg::cuda
