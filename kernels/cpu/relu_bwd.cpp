// Built with -fno-trapping-math (CMakeLists.txt): without it GCC will not evaluate g * alpha
// for lanes that keep g, so the select stays scalar on AVX2. The arithmetic per element is
// the same (one compare, one multiply).
#include "kernels/cpu/relu_bwd.hpp"

#include <algorithm>

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
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * kChunk;
    chunk(y + b, g + b, alpha, d + b, std::min(kChunk, n - b));
  }
}

void relu_bwd_f32_blocked(const float* y, const float* g, float alpha, float* d, float* dblk, int64_t N, int64_t C,
                          int64_t HW, int64_t B) {
  constexpr int64_t kTile = 256;  // pixels per task
  const int64_t tiles = (HW + kTile - 1) / kTile, total = N * tiles;
#pragma omp parallel for schedule(static) if (N * C * HW > 16384)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t n = t / tiles, p0 = (t % tiles) * kTile, p1 = std::min(HW, p0 + kTile), off = n * HW * C;
    if (B == 8) pixels8(y + off, g + off, alpha, d + off, dblk + off, C, HW, p0, p1);
    else pixels16(y + off, g + off, alpha, d + off, dblk + off, C, HW, p0, p1);
  }
}

}  // namespace crackseg::onednn
