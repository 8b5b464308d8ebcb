// Built with -fno-trapping-math (CMakeLists.txt): without it GCC will not evaluate g * alpha
// for lanes that keep g, so the select stays scalar on AVX2. The arithmetic per element is
// the same (one compare, one multiply).
#include "kernels/cpu/relu_bwd.hpp"

#include "kernels/cpu/parallel_tiles.hpp"
#include "src/core/target_clones.hpp"

namespace crackseg::onednn {
namespace {

CRACKSEG_CLONES void chunk(const float* __restrict y, const float* __restrict g, float alpha, float* __restrict d,
                           int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) d[i] = y[i] > 0.0f ? g[i] : g[i] * alpha;
}

// Pixels [p0, p1) of one image: both layouts, B channels at a time.
template <int64_t B>
__attribute__((always_inline)) inline void pixels(const float* __restrict y, const float* __restrict g, float alpha,
                                                  float* __restrict d, float* __restrict dblk, int64_t C, int64_t HW,
                                                  int64_t p0, int64_t p1) {
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t cb = 0; cb < C / B; ++cb) {
      const int64_t a = p * C + cb * B;
      float* __restrict o = dblk + (cb * HW + p) * B;
#pragma omp simd
      for (int64_t j = 0; j < B; ++j) {
        const float v = y[a + j] > 0.0f ? g[a + j] : g[a + j] * alpha;
        d[a + j] = v;
        o[j] = v;
      }
    }
}
CRACKSEG_CLONES void pixels8(const float* y, const float* g, float alpha, float* d, float* dblk, int64_t C, int64_t HW,
                             int64_t p0, int64_t p1) {
  pixels<8>(y, g, alpha, d, dblk, C, HW, p0, p1);
}
CRACKSEG_CLONES void pixels16(const float* y, const float* g, float alpha, float* d, float* dblk, int64_t C,
                              int64_t HW, int64_t p0, int64_t p1) {
  pixels<16>(y, g, alpha, d, dblk, C, HW, p0, p1);
}

}  // namespace

void relu_bwd_f32(const float* y, const float* g, float alpha, float* d, int64_t n) {
  parallel_chunks(n, [&](int64_t b, int64_t k) { chunk(y + b, g + b, alpha, d + b, k); });
}

void relu_bwd_f32_blocked(const float* y, const float* g, float alpha, float* d, float* dblk, int64_t N, int64_t C,
                          int64_t HW, int64_t B) {
  parallel_pixel_tiles(N, HW, N * C * HW, [&](int64_t n, int64_t p0, int64_t p1) {
    const int64_t off = n * HW * C;
    if (B == 8) pixels8(y + off, g + off, alpha, d + off, dblk + off, C, HW, p0, p1);
    else pixels16(y + off, g + off, alpha, d + off, dblk + off, C, HW, p0, p1);
  });
}

}  // namespace crackseg::onednn
