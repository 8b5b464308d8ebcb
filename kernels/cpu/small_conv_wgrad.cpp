// Few-input-channel convolution weight gradient (see small_conv_wgrad.hpp).
#include "kernels/cpu/small_conv_wgrad.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/simd_switches.hpp"

namespace crackseg::onednn {
namespace {

constexpr int64_t kRows = 4;  // output rows per block (fixed: the bits must not follow the threads)

struct Geometry {
  int64_t taps;    // K*K*I plus the bias tap (last)
  int64_t ov;      // output-channel vectors (O / 8)
  int64_t group;   // taps per register block (12 accumulators / ov)
  int64_t wpad;    // input pixels one output row's windows span: (Wo - 1) * S + K
  int64_t rows;    // N*Ho
  int64_t blocks;  // ceil(rows / kRows)
};

Geometry geometry(const SmallWgradShape& s) {
  Geometry g;
  g.taps = s.K * s.K * s.I + 1;
  g.ov = s.O / 8;
  g.group = std::max<int64_t>(1, 12 / g.ov);
  g.wpad = (s.Wo - 1) * s.S + s.K;
  g.rows = s.N * s.Ho;
  g.blocks = (g.rows + kRows - 1) / kRows;
  return g;
}

// The K input rows output row `row` = (n, oh) reads, each as wpad pixels starting at column
// -P, zeros outside the image: xp (K, wpad, I).
void padded_rows(const SmallWgradShape& s, const Geometry& g, const float* x, int64_t row, float* xp) {
  const int64_t n = row / s.Ho, oh = row % s.Ho, I = s.I;
  const int64_t lo = std::min(s.P, g.wpad), hi = std::clamp<int64_t>(s.W + s.P, lo, g.wpad);  // [lo, hi) inside
  for (int64_t kh = 0; kh < s.K; ++kh) {
    float* d = xp + kh * g.wpad * I;
    const int64_t ih = oh * s.S + kh - s.P;
    if (ih < 0 || ih >= s.H) {
      std::memset(d, 0, static_cast<std::size_t>(g.wpad * I) * sizeof(float));
      continue;
    }
    std::memset(d, 0, static_cast<std::size_t>(lo * I) * sizeof(float));
    std::memcpy(d + lo * I, x + ((n * s.H + ih) * s.W + (lo - s.P)) * I, static_cast<std::size_t>((hi - lo) * I) * sizeof(float));
    std::memset(d + hi * I, 0, static_cast<std::size_t>((g.wpad - hi) * I) * sizeof(float));
  }
}

// For taps t0 .. t0+G (tap t = (kh*K + kw)*I + i reads xp[kh][S*ow + kw][i]), the sums over the
// block's rows r and ow of x_tap * dy_r[ow][8v..8v+8), stored to out (taps, O); taps at or
// past `ntaps` are computed on tap 0's input and not stored.
template <int OV, int G>
__attribute__((target("avx2,fma"))) void tap_group(const float* const* xp, const float* const* dy, int64_t nrows,
                                                    const SmallWgradShape& s, const Geometry& g, int64_t t0,
                                                    int64_t ntaps, float* out) {
  const int64_t O = s.O, I = s.I, step = s.S * I;
  int64_t off[G];
  for (int t = 0; t < G; ++t) {
    const int64_t tap = t0 + t < ntaps ? t0 + t : 0, kk = tap / I, i = tap % I;
    off[t] = ((kk / s.K) * g.wpad + kk % s.K) * I + i;
  }
  // Constant-bound loops, unrolled, so that acc stays in registers (a variable bound on any
  // loop over it made GCC keep it on the stack: 3-6x slower).
  __m256 acc[G][OV];
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int v = 0; v < OV; ++v) acc[t][v] = _mm256_setzero_ps();
  for (int64_t r = 0; r < nrows; ++r) {
    const float* x = xp[r];
    const float* d = dy[r];
    for (int64_t ow = 0; ow < s.Wo; ++ow, x += step, d += O) {
      __m256 dv[OV];
#pragma GCC unroll 8
      for (int v = 0; v < OV; ++v) dv[v] = _mm256_loadu_ps(d + 8 * v);
#pragma GCC unroll 16
      for (int t = 0; t < G; ++t) {
        const __m256 b = _mm256_broadcast_ss(x + off[t]);
#pragma GCC unroll 8
        for (int v = 0; v < OV; ++v) acc[t][v] = _mm256_fmadd_ps(b, dv[v], acc[t][v]);
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t)
    if (t0 + t < ntaps)
#pragma GCC unroll 8
      for (int v = 0; v < OV; ++v) _mm256_storeu_ps(out + (t0 + t) * O + 8 * v, acc[t][v]);
}

template <int OV>
void block_sums(const float* const* xp, const float* const* dy, int64_t nrows, const SmallWgradShape& s,
                const Geometry& g, float* out) {
  constexpr int G = 12 / OV;
  const int64_t ntaps = g.taps - 1;
  for (int64_t t0 = 0; t0 < ntaps; t0 += G) tap_group<OV, G>(xp, dy, nrows, s, g, t0, ntaps, out);
  // The bias tap: dy summed in the same order (rows, then ow).
  float* b = out + ntaps * s.O;
  for (int64_t o = 0; o < s.O; ++o) b[o] = 0.0f;
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t ow = 0; ow < s.Wo; ++ow)
      for (int64_t o = 0; o < s.O; ++o) b[o] += dy[r][ow * s.O + o];
}

}  // namespace

bool small_conv_wgrad_fits(int64_t in_c, int64_t out_c, int64_t kernel) {
  return in_c >= 1 && in_c <= 7 && out_c >= 8 && out_c <= 64 && out_c % 8 == 0 && out_c != 40 && out_c != 56 &&
         kernel >= 1 && kernel * kernel * in_c < 64 && avx2_enabled();
}

std::size_t small_conv_wgrad_scratch_floats(const SmallWgradShape& s, int threads) {
  const Geometry g = geometry(s);
  return static_cast<std::size_t>(g.blocks * g.taps * s.O + threads * kRows * s.K * g.wpad * s.I);
}

void small_conv_wgrad(const SmallWgradShape& s, const float* x, const float* dy, float* scratch, float* dW, float* db,
                      int threads) {
  const Geometry g = geometry(s);
  float* partial = scratch;  // (blocks, taps, O)
  float* padded = scratch + g.blocks * g.taps * s.O;
  const int64_t O = s.O;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < g.blocks; ++b) {
    const int64_t per_row = s.K * g.wpad * s.I;
    float* xp = padded + omp_get_thread_num() * kRows * per_row;
    const int64_t r0 = b * kRows, nrows = std::min(kRows, g.rows - r0);
    const float* xrow[kRows];
    const float* drow[kRows];
    for (int64_t r = 0; r < nrows; ++r) {
      padded_rows(s, g, x, r0 + r, xp + r * per_row);
      xrow[r] = xp + r * per_row;
      drow[r] = dy + (r0 + r) * s.Wo * O;
    }
    float* out = partial + b * g.taps * O;
    switch (g.ov) {
      case 1: block_sums<1>(xrow, drow, nrows, s, g, out); break;
      case 2: block_sums<2>(xrow, drow, nrows, s, g, out); break;
      case 3: block_sums<3>(xrow, drow, nrows, s, g, out); break;
      case 4: block_sums<4>(xrow, drow, nrows, s, g, out); break;
      case 6: block_sums<6>(xrow, drow, nrows, s, g, out); break;
      default: block_sums<8>(xrow, drow, nrows, s, g, out); break;
    }
  }
  // Blocks in order, in double; then into dW (O, I, K, K) and db.
  const int64_t KKI = g.taps - 1, KK = s.K * s.K, I = s.I;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t e = 0; e < g.taps * O; ++e) {
    const int64_t t = e / O, o = e % O;
    double acc = 0.0;
    for (int64_t b = 0; b < g.blocks; ++b) acc += partial[(b * g.taps + t) * O + o];
    if (t < KKI) {
      const int64_t kk = t / I, i = t % I;  // tap = (kh*K + kw)*I + i
      dW[(o * I + i) * KK + kk] += static_cast<float>(acc);
    } else if (db) {
      db[o] += static_cast<float>(acc);
    }
  }
}

}  // namespace crackseg::onednn
