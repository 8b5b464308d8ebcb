// Few-input-channel convolution weight gradient (see small_conv_wgrad.hpp).
#include "kernels/cpu/small_conv_wgrad.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/simd_switches.hpp"

namespace crackseg::onednn {
namespace {

constexpr int64_t kRows = 4;                    // output rows per block at least
constexpr int64_t kPartialBudget = 256 * 1024;  // floats of block partial sums to aim for at most
constexpr int64_t kMinBlocks = 16;              // blocks to aim for at least (work for the threads)
constexpr int64_t kMaxTapsTimesO = 32 * 1024;   // past this, oneDNN's blocked kernel was as fast

// Blocks are runs of R output rows of one image, or runs of M whole images, R and M functions
// of the shape only (never of the thread count: the bits must not follow the threads): R =
// kRows, or more where that many blocks' partial sums (taps x O floats each) would pass
// kPartialBudget (their reduction would then cost more than the multiplies: the patch CNN's
// layers, 128 images of 13-27 rows), but not fewer than kMinBlocks blocks where the rows allow;
// M > 1 where even one block per image would pass the budget.
struct Geometry {
  int64_t taps;       // K*K*I plus the bias tap (last)
  int64_t ov;         // output-channel vectors (O / 8)
  int64_t wpad;       // input pixels one output row's windows span: (Wo - 1) * S + K
  int64_t R;          // output rows per block (Ho when blocks are whole images)
  int64_t M;          // images per block (1 unless R = Ho)
  int64_t per_image;  // blocks per image: ceil(Ho / R) (1 when M > 1)
  int64_t blocks;     // N * per_image, or ceil(N / M)
  int64_t slab;       // floats of one block's padded input rows: ((R - 1) * S + K) * wpad * I
};

Geometry geometry(const SmallWgradShape& s) {
  Geometry g;
  g.taps = s.Kh * s.Kw * s.I + 1;
  g.ov = s.O / 8;
  g.wpad = (s.Wo - 1) * s.S + s.Kw;
  const int64_t max_blocks = std::max<int64_t>(kMinBlocks, kPartialBudget / (g.taps * s.O));
  const int64_t per_image_max = std::max<int64_t>(1, max_blocks / s.N);
  g.R = std::min(s.Ho, std::max(kRows, (s.Ho + per_image_max - 1) / per_image_max));
  g.per_image = (s.Ho + g.R - 1) / g.R;
  g.M = g.per_image > 1 ? 1 : std::max<int64_t>(1, (s.N + max_blocks - 1) / max_blocks);
  g.blocks = g.M > 1 ? (s.N + g.M - 1) / g.M : s.N * g.per_image;
  g.slab = ((g.R - 1) * s.S + s.Kh) * g.wpad * s.I;
  return g;
}

// The input rows output rows oh0 .. oh0+nrows of image n read, each as wpad pixels starting at
// column -P, zeros outside the image: xp (rows, wpad, I), output row r's window rows from
// xp + r*S*wpad*I.
void padded_slab(const SmallWgradShape& s, const Geometry& g, const float* x, int64_t n, int64_t oh0, int64_t nrows,
                 float* xp) {
  const int64_t I = s.I, rows = (nrows - 1) * s.S + s.Kh;
  const int64_t lo = std::min(s.Pw, g.wpad), hi = std::clamp<int64_t>(s.W + s.Pw, lo, g.wpad);  // [lo, hi) inside
  for (int64_t r = 0; r < rows; ++r) {
    float* d = xp + r * g.wpad * I;
    const int64_t ih = oh0 * s.S + r - s.Ph;
    if (ih < 0 || ih >= s.H) {
      std::memset(d, 0, static_cast<std::size_t>(g.wpad * I) * sizeof(float));
      continue;
    }
    std::memset(d, 0, static_cast<std::size_t>(lo * I) * sizeof(float));
    std::memcpy(d + lo * I, x + ((n * s.H + ih) * s.W + (lo - s.Pw)) * I, static_cast<std::size_t>((hi - lo) * I) * sizeof(float));
    std::memset(d + hi * I, 0, static_cast<std::size_t>((g.wpad - hi) * I) * sizeof(float));
  }
}

// For taps t0 .. t0+G (tap t = (kh*K + kw)*I + i reads row r's window row kh at S*ow + kw,
// channel i) and output channels o0 .. o0+8*OV, the sums over rows r0 .. r1 and ow of
// x_tap * dy_r[ow][o], added to out (taps, O) (stored when `fresh`, the block's first rows:
// every element is one FMA chain over the block's rows and ow in order, whatever cuts it);
// taps at or past `ntaps` are computed on tap 0's input and not stored.
template <int OV, int G>
__attribute__((target("avx2,fma"))) void tap_group(const float* xp, const float* dy, int64_t r0, int64_t r1,
                                                    const SmallWgradShape& s, const Geometry& g, int64_t t0,
                                                    int64_t ntaps, const int32_t* offs, int64_t o0, bool fresh,
                                                    float* out) {
  const int64_t O = s.O, step = s.S * s.I, row_step = s.S * g.wpad * s.I;
  int64_t off[G];
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t) off[t] = offs[t0 + t];
  // Constant-bound loops, unrolled, so that acc stays in registers (a variable bound on any
  // loop over it made GCC keep it on the stack: 3-6x slower).
  __m256 acc[G][OV];
#pragma GCC unroll 16
  for (int t = 0; t < G; ++t)
#pragma GCC unroll 8
    for (int v = 0; v < OV; ++v)
      acc[t][v] = fresh || t0 + t >= ntaps ? _mm256_setzero_ps() : _mm256_loadu_ps(out + (t0 + t) * O + o0 + 8 * v);
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = xp + r * row_step;
    const float* d = dy + r * s.Wo * O + o0;
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
      for (int v = 0; v < OV; ++v) _mm256_storeu_ps(out + (t0 + t) * O + o0 + 8 * v, acc[t][v]);
}

// A block's sums: output channels in slices of 8*OV, taps in groups of G (12 accumulators),
// rows in passes of at least 64 pixels, so that the slice of dy and the window rows one pass
// reads stay in L1 across the tap groups (one pass over all the block's rows per group ran
// from L2 at half the multiply rate for 32-64 input channels).
template <int OV>
void block_sums(const float* xp, const float* dy, int64_t nrows, const SmallWgradShape& s, const Geometry& g,
                const int32_t* offs, bool fresh, float* out) {
  constexpr int G = 12 / OV;
  const int64_t ntaps = g.taps - 1, pass = std::max<int64_t>(1, (64 + s.Wo - 1) / s.Wo);
  for (int64_t r0 = 0; r0 < nrows; r0 += pass)
    for (int64_t o0 = 0; o0 < s.O; o0 += 8 * OV)
      for (int64_t t0 = 0; t0 < ntaps; t0 += G)
        tap_group<OV, G>(xp, dy, r0, std::min(nrows, r0 + pass), s, g, t0, ntaps, offs, o0, fresh && r0 == 0, out);
  // The bias tap: dy summed in the same order (rows, then ow), each o its own sum.
  float b[128] = {};
  const int64_t O = s.O, pixels = nrows * s.Wo;
  if (!fresh) std::memcpy(b, out + ntaps * O, static_cast<std::size_t>(O) * sizeof(float));
  for (int64_t p = 0; p < pixels; ++p)
    for (int64_t o = 0; o < O; ++o) b[o] += dy[p * O + o];
  std::memcpy(out + ntaps * O, b, static_cast<std::size_t>(O) * sizeof(float));
}

}  // namespace

bool small_conv_wgrad_fits(int64_t in_c, int64_t out_c, int64_t kh, int64_t kw) {
  return in_c >= 1 && out_c >= 8 && out_c <= 64 && out_c % 8 == 0 && out_c != 40 && out_c != 56 && kh >= 1 &&
         kw >= 1 && (kh * kw * in_c + 1) * out_c <= kMaxTapsTimesO && avx2_enabled();
}

SmallWgradBlocks small_conv_wgrad_blocks(const SmallWgradShape& s) {
  const Geometry g = geometry(s);
  return {g.R, g.M, g.blocks};
}

std::size_t small_conv_wgrad_scratch_floats(const SmallWgradShape& s, int threads) {
  const Geometry g = geometry(s);
  return static_cast<std::size_t>(g.blocks * g.taps * s.O + threads * g.slab);
}

void small_conv_wgrad(const SmallWgradShape& s, const float* x, const float* dy, float* scratch, float* dW, float* db,
                      int threads) {
  const Geometry g = geometry(s);
  float* partial = scratch;  // (blocks, taps, O)
  float* padded = scratch + g.blocks * g.taps * s.O;
  const int64_t O = s.O;
  // Each tap's offset in a window row slab (tap = (kh*Kw + kw)*I + i), once per call (the
  // divisions cost as much as a short pass when done per tap group); past the last tap, tap
  // 0's (the groups' unused lanes read it and are not stored).
  int32_t offs[kMaxTapsTimesO / 8 + 12];
  const int64_t ntaps = g.taps - 1;
  for (int64_t t = 0; t < ntaps + 12; ++t) {
    const int64_t tap = t < ntaps ? t : 0, kk = tap / s.I, i = tap % s.I;
    offs[t] = static_cast<int32_t>(((kk / s.Kw) * g.wpad + kk % s.Kw) * s.I + i);
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t b = 0; b < g.blocks; ++b) {
    float* xp = padded + omp_get_thread_num() * g.slab;
    float* out = partial + b * g.taps * O;
    const int64_t n0 = g.M > 1 ? b * g.M : b / g.per_image, n1 = g.M > 1 ? std::min(s.N, n0 + g.M) : n0 + 1;
    const int64_t oh0 = g.M > 1 ? 0 : (b % g.per_image) * g.R, nrows = std::min(g.R, s.Ho - oh0);
    for (int64_t n = n0; n < n1; ++n) {
      padded_slab(s, g, x, n, oh0, nrows, xp);
      const float* d = dy + (n * s.Ho + oh0) * s.Wo * O;
      switch (g.ov) {  // slices of 16 channels where O allows (15 registers), else 8 or 24
        case 1: block_sums<1>(xp, d, nrows, s, g, offs, n == n0, out); break;
        case 3: block_sums<3>(xp, d, nrows, s, g, offs, n == n0, out); break;
        default: block_sums<2>(xp, d, nrows, s, g, offs, n == n0, out); break;
      }
    }
  }
  // Blocks in order, in double (each element's sum over the blocks in block order; the o lanes
  // are separate sums, so the inner loop vectorizes); then into dW (O, I, K, K) and db.
  const int64_t KKI = g.taps - 1, KK = s.Kh * s.Kw, I = s.I;
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < g.taps; ++t) {
    double acc[128] = {};
    for (int64_t b = 0; b < g.blocks; ++b) {
      const float* p = partial + (b * g.taps + t) * O;
      for (int64_t o = 0; o < O; ++o) acc[o] += p[o];
    }
    for (int64_t o = 0; o < O; ++o) {
      if (t < KKI) {
        const int64_t kk = t / I, i = t % I;  // tap = (kh*K + kw)*I + i
        dW[(o * I + i) * KK + kk] += static_cast<float>(acc[o]);
      } else if (db) {
        db[o] += static_cast<float>(acc[o]);
      }
    }
  }
}

}  // namespace crackseg::onednn
