// Strided column copies for concat: one thread per float, so a 1-channel input (Spiral-Net
// concatenates single-channel maps) costs one coalesced pass instead of a
// cudaMemcpy2DAsync with 4-byte rows (one DMA descriptor per pixel).
#include "kernels/cuda/context.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/launch.cuh"

namespace crackseg::cuda {
namespace {
__global__ void k_copy_columns(float* dst, int64_t dst_pitch, const float* src, int64_t src_pitch, int64_t width,
                               int64_t rows) {
  CRACKSEG_GRID_STRIDE(i, rows * width) {
    const int64_t r = i / width, c = i % width;
    dst[r * dst_pitch + c] = src[r * src_pitch + c];
  }
}
}  // namespace

void copy_columns(float* dst, int64_t dst_pitch, const float* src, int64_t src_pitch, int64_t width, int64_t rows) {
  if (width == 0 || rows == 0) return;
  k_copy_columns<<<grid_for(rows * width), kThreads, 0, Context::get().stream()>>>(dst, dst_pitch, src, src_pitch,
                                                                                  width, rows);
  CRACKSEG_CUDA_CHECK_LAUNCH("copy_columns");
}

}  // namespace crackseg::cuda
