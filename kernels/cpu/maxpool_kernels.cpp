// Max pooling loops (see maxpool_kernels.hpp). The channel loops vectorise (nhwc: a pixel's
// channels are contiguous); built with -fno-trapping-math so GCC turns the compare-and-select
// into blends on AVX2 too (CMakeLists.txt).
#include "kernels/cpu/maxpool_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/simd_switches.hpp"
#include "src/core/target_clones.hpp"

namespace crackseg::onednn {
namespace {

// Output pixel (n, oh, ow): its outputs yp / winners wp, and the input pixels of its window
// that lie inside the image, in window order (kh, kw), with their window positions kh*K + kw
// (src, pos; K * K < 256: own_maxpool_fits). A window of padding only gets 0 and no winner
// (0xFF) here and nv = 0.
struct Window {
  float* yp;
  uint8_t* wp;
  int nv;
};
__attribute__((always_inline)) inline Window window(const PoolShape& s, const float* x, float* y, uint8_t* win,
                                                    int64_t n, int64_t oh, int64_t ow, const float** src,
                                                    uint8_t* pos) {
  Window o{y + ((n * s.Ho + oh) * s.Wo + ow) * s.C, win + ((n * s.Ho + oh) * s.Wo + ow) * s.C, 0};
  for (int64_t kh = 0; kh < s.K; ++kh) {
    const int64_t ih = oh * s.S - s.P + kh;
    if (ih < 0 || ih >= s.H) continue;
    for (int64_t kw = 0; kw < s.K; ++kw) {
      const int64_t iw = ow * s.S - s.P + kw;
      if (iw < 0 || iw >= s.W) continue;
      src[o.nv] = x + ((n * s.H + ih) * s.W + iw) * s.C;
      pos[o.nv++] = static_cast<uint8_t>(kh * s.K + kw);
    }
  }
  if (o.nv == 0) std::memset(o.yp, 0, static_cast<std::size_t>(s.C) * sizeof(float)), std::memset(o.wp, 0xFF, s.C);
  return o;
}

// One output row (image n, row oh).
CRACKSEG_CLONES void fwd_row(const PoolShape& s, const float* __restrict x, float* __restrict y,
                             uint8_t* __restrict win, int64_t n, int64_t oh) {
  const int64_t C = s.C;
  const float* src[256];
  uint8_t pos[256];
  for (int64_t ow = 0; ow < s.Wo; ++ow) {
    const Window o = window(s, x, y, win, n, oh, ow, src, pos);
    if (o.nv == 0) continue;
    float* yp = o.yp;
    uint8_t* wp = o.wp;
    const float* x0 = src[0];
    const uint8_t k0 = pos[0];
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) yp[c] = x0[c], wp[c] = k0;
    for (int v = 1; v < o.nv; ++v) {
      const float* xp = src[v];
      const uint8_t k = pos[v];
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const bool m = xp[c] > yp[c];
        yp[c] = m ? xp[c] : yp[c];
        wp[c] = m ? k : wp[c];
      }
    }
  }
}

// Input pixel iw of row dr (image n) of a disjoint pool (K == S), whose window is in output
// row oh at window row kh: its gradient d, the window's output gradient g and winners w, and
// the pixel's position k in it. A pixel no window reaches gets 0 here and g = nullptr.
struct Cell {
  float* d;
  const float* g;
  const uint8_t* w;
  uint8_t k;
};
__attribute__((always_inline)) inline Cell cell(const PoolShape& s, const float* dy, const uint8_t* win, float* dr,
                                                int64_t n, int64_t oh, int64_t kh, int64_t iw) {
  const int64_t u = iw + s.P, ow = u / s.S;
  Cell c{dr + iw * s.C, nullptr, nullptr, 0};
  if (ow >= s.Wo) {
    std::memset(c.d, 0, static_cast<std::size_t>(s.C) * sizeof(float));
    return c;
  }
  c.g = dy + ((n * s.Ho + oh) * s.Wo + ow) * s.C;
  c.w = win + ((n * s.Ho + oh) * s.Wo + ow) * s.C;
  c.k = static_cast<uint8_t>(kh * s.K + u % s.S);
  return c;
}

// Non-overlapping windows (K == S): input row ih of image n, each element 0 + dy of its
// window when it won, else 0 (rows and columns no window reaches: 0).
CRACKSEG_CLONES void bwd_row_disjoint(const PoolShape& s, const float* __restrict dy, const uint8_t* __restrict win,
                                      float* __restrict dx, int64_t n, int64_t ih) {
  const int64_t C = s.C, t = ih + s.P, oh = t / s.S, kh = t % s.S;
  float* dr = dx + (n * s.H + ih) * s.W * C;
  if (oh >= s.Ho) {
    std::memset(dr, 0, static_cast<std::size_t>(s.W * C) * sizeof(float));
    return;
  }
  for (int64_t iw = 0; iw < s.W; ++iw) {
    const Cell e = cell(s, dy, win, dr, n, oh, kh, iw);
    if (!e.g) continue;
    float* d = e.d;
    const float* g = e.g;
    const uint8_t* w = e.w;
    const uint8_t k = e.k;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) d[c] = w[c] == k ? 0.0f + g[c] : 0.0f;
  }
}

// Overlapping windows: image n, outputs in (oh, ow, c) order added into the zeroed image.
void bwd_image_overlap(const PoolShape& s, const float* dy, const uint8_t* win, float* dx, int64_t n) {
  const int64_t C = s.C;
  float* di = dx + n * s.H * s.W * C;
  std::memset(di, 0, static_cast<std::size_t>(s.H * s.W * C) * sizeof(float));
  for (int64_t oh = 0; oh < s.Ho; ++oh)
    for (int64_t ow = 0; ow < s.Wo; ++ow) {
      const int64_t o = ((n * s.Ho + oh) * s.Wo + ow) * C;
      for (int64_t c = 0; c < C; ++c) {
        const int64_t k = win[o + c];
        if (k == 0xFF) continue;  // no input in the window
        const int64_t ih = oh * s.S - s.P + k / s.K, iw = ow * s.S - s.P + k % s.K;
        di[(ih * s.W + iw) * C + c] += dy[o + c];
      }
    }
}

// AVX-512 rows for C a multiple of 16 (the patch CNN's 16- and 32-channel pools, the U-Net's):
// the loops above mix float and one-byte lanes, which GCC vectorised poorly for these widths
// (128-bit lanes and a masked store per window position: the patch CNN's 2x2 pool forward
// took 0.6-0.7 ms for 6 MB, ~5% of its step). Per 16 channels the running maximum stays in
// one zmm and the winners' positions in one xmm; the same comparisons (strictly greater, so
// the first maximum in window order wins) and the same 0 + dy: the same bits.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vl"))) void fwd_row_avx512(const PoolShape& s, const float* x, float* y,
                                                                         uint8_t* win, int64_t n, int64_t oh) {
  const float* src[256];
  uint8_t pos[256];
  for (int64_t ow = 0; ow < s.Wo; ++ow) {
    const Window o = window(s, x, y, win, n, oh, ow, src, pos);
    for (int64_t c = 0; c < s.C && o.nv > 0; c += 16) {
      __m512 m = _mm512_loadu_ps(src[0] + c);
      __m128i w = _mm_set1_epi8(static_cast<char>(pos[0]));
      for (int v = 1; v < o.nv; ++v) {
        const __m512 a = _mm512_loadu_ps(src[v] + c);
        const __mmask16 gt = _mm512_cmp_ps_mask(a, m, _CMP_GT_OQ);
        m = _mm512_mask_mov_ps(m, gt, a);
        w = _mm_mask_mov_epi8(w, gt, _mm_set1_epi8(static_cast<char>(pos[v])));
      }
      _mm512_storeu_ps(o.yp + c, m);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o.wp + c), w);
    }
  }
}
__attribute__((target("avx512f,avx512bw,avx512vl"))) void bwd_row_disjoint_avx512(const PoolShape& s, const float* dy,
                                                                                  const uint8_t* win, float* dx,
                                                                                  int64_t n, int64_t ih) {
  const int64_t C = s.C, t = ih + s.P, oh = t / s.S, kh = t % s.S;
  float* dr = dx + (n * s.H + ih) * s.W * C;
  if (oh >= s.Ho) {
    std::memset(dr, 0, static_cast<std::size_t>(s.W * C) * sizeof(float));
    return;
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t iw = 0; iw < s.W; ++iw) {
    const Cell e = cell(s, dy, win, dr, n, oh, kh, iw);
    if (!e.g) continue;
    const __m128i k = _mm_set1_epi8(static_cast<char>(e.k));
    for (int64_t c = 0; c < C; c += 16) {
      const __mmask16 won = _mm_cmpeq_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e.w + c)), k);
      _mm512_storeu_ps(e.d + c, _mm512_maskz_add_ps(won, zero, _mm512_loadu_ps(e.g + c)));  // 0 + dy, or 0
    }
  }
}
#pragma GCC diagnostic pop
// Whether the AVX-512 rows take this shape here (CRACKSEG_NO_AVX512=1: the loops above).
bool avx512_rows(const PoolShape& s) {
  return s.C % 16 == 0 && avx512_enabled() && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

}  // namespace

void maxpool_forward(const PoolShape& s, const float* x, float* y, uint8_t* winner) {
  const int64_t rows = s.N * s.Ho;
  if (avx512_rows(s)) {
#pragma omp parallel for schedule(static) if (rows * s.Wo * s.C > 16384)
    for (int64_t r = 0; r < rows; ++r) fwd_row_avx512(s, x, y, winner, r / s.Ho, r % s.Ho);
    return;
  }
#pragma omp parallel for schedule(static) if (rows * s.Wo * s.C > 16384)
  for (int64_t r = 0; r < rows; ++r) fwd_row(s, x, y, winner, r / s.Ho, r % s.Ho);
}

void maxpool_backward(const PoolShape& s, const float* dy, const uint8_t* winner, float* dx) {
  if (s.K == s.S) {
    const int64_t rows = s.N * s.H;
    if (avx512_rows(s)) {
#pragma omp parallel for schedule(static) if (rows * s.W * s.C > 16384)
      for (int64_t r = 0; r < rows; ++r) bwd_row_disjoint_avx512(s, dy, winner, dx, r / s.H, r % s.H);
      return;
    }
#pragma omp parallel for schedule(static) if (rows * s.W * s.C > 16384)
    for (int64_t r = 0; r < rows; ++r) bwd_row_disjoint(s, dy, winner, dx, r / s.H, r % s.H);
    return;
  }
#pragma omp parallel for schedule(static) if (s.N > 1 && s.H * s.W * s.C * s.N > 16384)
  for (int64_t n = 0; n < s.N; ++n) bwd_image_overlap(s, dy, winner, dx, n);
}

}  // namespace crackseg::onednn
