// Few-input-channel convolution input gradient (see small_conv_dgrad.hpp).
#include "kernels/cpu/small_conv_dgrad.hpp"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/cpu/dnnl_common.hpp"
#include "src/core/error.hpp"

namespace crackseg::onednn {
namespace {

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized (their _mm512_undefined_*).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// One row of T: T[ow, :] = sum_o dy[ow, o] * wt[o, :] (NV registers per pixel), four pixels
// at a time so each weight vector loaded serves four FMAs.
template <int NV>
__attribute__((target("avx512f"))) void t_row(const float* dy, const float* wt, float* T, int64_t Wo, int64_t O) {
  constexpr int64_t L = NV * 16;
  int64_t ow = 0;
  for (; ow + 4 <= Wo; ow += 4) {
    __m512 acc[4][NV];
    for (int p = 0; p < 4; ++p)
      for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_setzero_ps();
    const float* d = dy + ow * O;
    for (int64_t o = 0; o < O; ++o) {
      __m512 w[NV];
      for (int v = 0; v < NV; ++v) w[v] = _mm512_loadu_ps(wt + o * L + 16 * v);
      for (int p = 0; p < 4; ++p) {
        const __m512 b = _mm512_set1_ps(d[p * O + o]);
        for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_fmadd_ps(b, w[v], acc[p][v]);
      }
    }
    for (int p = 0; p < 4; ++p)
      for (int v = 0; v < NV; ++v) _mm512_storeu_ps(T + (ow + p) * L + 16 * v, acc[p][v]);
  }
  for (; ow < Wo; ++ow) {
    __m512 acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_ps();
    for (int64_t o = 0; o < O; ++o) {
      const __m512 b = _mm512_set1_ps(dy[ow * O + o]);
      for (int v = 0; v < NV; ++v) acc[v] = _mm512_fmadd_ps(b, _mm512_loadu_ps(wt + o * L + 16 * v), acc[v]);
    }
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(T + ow * L + 16 * v, acc[v]);
  }
}

// The same on AVX2 (CPUs without AVX-512): each 16-float tap register is two 8-float ones,
// P pixels at a time (as many as leave registers for the weights). Every T element is the
// same FMA chain over o as in the AVX-512 version: the same bits.
template <int NV, int P>
__attribute__((target("avx2,fma"))) void t_row_avx2(const float* dy, const float* wt, float* T, int64_t Wo, int64_t O) {
  constexpr int V = 2 * NV;
  constexpr int64_t L = NV * 16;
  int64_t ow = 0;
  for (; ow + P <= Wo; ow += P) {
    __m256 acc[P][V];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) acc[p][v] = _mm256_setzero_ps();
    const float* d = dy + ow * O;
    for (int64_t o = 0; o < O; ++o) {
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) {
        const __m256 w = _mm256_loadu_ps(wt + o * L + 8 * v);
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) acc[p][v] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + p * O + o), w, acc[p][v]);
      }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) _mm256_storeu_ps(T + (ow + p) * L + 8 * v, acc[p][v]);
  }
  for (; ow < Wo; ++ow) {
    __m256 acc[V];
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) acc[v] = _mm256_setzero_ps();
    for (int64_t o = 0; o < O; ++o) {
      const __m256 b = _mm256_broadcast_ss(dy + ow * O + o);
#pragma GCC unroll 16
      for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(b, _mm256_loadu_ps(wt + o * L + 8 * v), acc[v]);
    }
#pragma GCC unroll 16
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(T + ow * L + 8 * v, acc[v]);
  }
}
#pragma GCC diagnostic pop

// Lanes of one pixel's sum: a float for one channel, 4 for 2-4, 8 for 5-7 (narrower stores
// cross fewer cache lines).
template <int I>
struct PixelSum;
template <>
struct PixelSum<1> {
  static __m128 zero() { return _mm_setzero_ps(); }
  static __m128 add(__m128 a, const float* p) { return _mm_add_ss(a, _mm_load_ss(p)); }
  static void store(float* d, __m128 a) { _mm_store_ss(d, a); }
};
template <int I>
  requires(I >= 2 && I <= 4)
struct PixelSum<I> {
  static __m128 zero() { return _mm_setzero_ps(); }
  static __m128 add(__m128 a, const float* p) { return _mm_add_ps(a, _mm_loadu_ps(p)); }
  static void store(float* d, __m128 a) { _mm_storeu_ps(d, a); }
};
template <int I>
  requires(I >= 5 && I <= 8)
struct PixelSum<I> {
  __attribute__((target("avx2"))) static __m256 zero() { return _mm256_setzero_ps(); }
  __attribute__((target("avx2"))) static __m256 add(__m256 a, const float* p) {
    return _mm256_add_ps(a, _mm256_loadu_ps(p));
  }
  __attribute__((target("avx2"))) static void store(float* d, __m256 a) { _mm256_storeu_ps(d, a); }
};

// One dx row: each pixel's I channels summed in one register over the taps that reach it,
// T row by T row (kh ascending), then the pixel's taps (kw ascending): the order, and so the
// bits, of zeroing the row and adding each tap's T values in (kh, kw) order. A pixel's vector
// store (PixelSum) runs into the next pixel's channels, which that pixel's store then overwrites; the
// row's last pixel stores its I floats only. The reads run up to 8 - I floats past a tap's
// values (inside T, or the kTSlack floats after each thread's T rows).
template <int I>
__attribute__((target("avx2"))) void gather_row(const SmallConvShape& s, const float* T, int64_t oh0, int64_t L,
                                                const int32_t* woff, const uint8_t* wcnt, int64_t n, int64_t h,
                                                float* dx) {
  using PS = PixelSum<I>;
  const float* rows[8];
  int nr = 0;
  for (int64_t kh = 0; kh < s.K; ++kh) {
    const int64_t t = h + s.P - kh;  // = S*oh
    if (t < 0 || t % s.S != 0 || t / s.S >= s.Ho) continue;
    rows[nr++] = T + (t / s.S - oh0) * s.Wo * L + kh * s.K * I;
  }
  float* d = dx + ((n * s.H + h) * s.W) * I;
  const int64_t K = s.K;
  for (int64_t w = 0; w < s.W; ++w) {
    auto acc = PS::zero();
    const int32_t* off = woff + w * K;
    const int cnt = wcnt[w];
    for (int r = 0; r < nr; ++r)
      for (int j = 0; j < cnt; ++j) acc = PS::add(acc, rows[r] + off[j]);
    if (w + 1 < s.W) {
      PS::store(d + w * I, acc);
    } else {
      alignas(32) float last[8];
      PS::store(last, acc);
      for (int c = 0; c < I; ++c) d[w * I + c] = last[c];
    }
  }
}
void gather(const SmallConvShape& s, const float* T, int64_t oh0, int64_t L, const int32_t* woff, const uint8_t* wcnt,
            int64_t n, int64_t h, float* dx) {
  switch (s.I) {
    case 1: return gather_row<1>(s, T, oh0, L, woff, wcnt, n, h, dx);
    case 2: return gather_row<2>(s, T, oh0, L, woff, wcnt, n, h, dx);
    case 3: return gather_row<3>(s, T, oh0, L, woff, wcnt, n, h, dx);
    case 4: return gather_row<4>(s, T, oh0, L, woff, wcnt, n, h, dx);
    case 5: return gather_row<5>(s, T, oh0, L, woff, wcnt, n, h, dx);
    case 6: return gather_row<6>(s, T, oh0, L, woff, wcnt, n, h, dx);
    case 7: return gather_row<7>(s, T, oh0, L, woff, wcnt, n, h, dx);
    default: throw Error("SmallConvDgrad: " + std::to_string(s.I) + " input channels (at most 7)");
  }
}

using TRow = void (*)(const float*, const float*, float*, int64_t, int64_t);
TRow t_row_for(int64_t nv, bool avx512) {
  switch (nv) {
    case 1: return avx512 ? t_row<1> : t_row_avx2<1, 4>;
    case 2: return avx512 ? t_row<2> : t_row_avx2<2, 3>;
    case 3: return avx512 ? t_row<3> : t_row_avx2<3, 2>;
    case 4: return avx512 ? t_row<4> : t_row_avx2<4, 1>;
    default: throw Error("SmallConvDgrad: " + std::to_string(nv) + " tap registers (at most 4)");
  }
}

}  // namespace

bool small_conv_dgrad_fits(int64_t in_c, int64_t kernel) {
  return in_c >= 1 && in_c <= 7 && kernel >= 2 && kernel * kernel * in_c <= 64 && (avx512_enabled() || avx2_enabled());
}

SmallConvDgrad::SmallConvDgrad(const SmallConvShape& s) : s_(s) {
  NV_ = (s.K * s.K * s.I + 15) / 16;
  // dx rows per block: T rows about 16 (one row of halo per block when K > S).
  rows_per_block_ = 16 * s.S;
  t_rows_ = (rows_per_block_ - 1 + s.K - 1) / s.S + 2;
  threads_ = std::max(1, omp_get_max_threads());
  avx512_ = avx512_enabled();
  wt_ = alloc_buffer({s.O * NV_ * 16});
  std::memset(wt_.raw(), 0, wt_.nbytes());
  // Per input column w: the T offsets (ow*L + kw*I) of the taps reaching it, kw ascending.
  const int64_t L = NV_ * 16;
  woff_.assign(static_cast<std::size_t>(s.W * s.K), 0);
  wcnt_.assign(static_cast<std::size_t>(s.W), 0);
  for (int64_t w = 0; w < s.W; ++w)
    for (int64_t kw = 0; kw < s.K; ++kw) {
      const int64_t u = w + s.P - kw;  // = S*ow
      if (u < 0 || u % s.S != 0 || u / s.S >= s.Wo) continue;
      woff_[static_cast<std::size_t>(w * s.K + wcnt_[w]++)] = static_cast<int32_t>(u / s.S * L + kw * s.I);
    }
}

void SmallConvDgrad::set_weights(const float* W) {
  const int64_t KK = s_.K * s_.K, L = NV_ * 16;
  float* wt = wt_.data<float>();
  for (int64_t o = 0; o < s_.O; ++o)
    for (int64_t i = 0; i < s_.I; ++i)
      for (int64_t kk = 0; kk < KK; ++kk) wt[o * L + kk * s_.I + i] = W[(o * s_.I + i) * KK + kk];
}

std::size_t SmallConvDgrad::scratch_bytes() const {
  return static_cast<std::size_t>(threads_ * t_stride()) * sizeof(float);
}

void SmallConvDgrad::run(const float* dy, float* dx, float* scratch) {
  const SmallConvShape s = s_;
  const int64_t L = NV_ * 16, blocks_per_image = (s.H + rows_per_block_ - 1) / rows_per_block_;
  const int64_t tasks = s.N * blocks_per_image;
  const TRow row = t_row_for(NV_, avx512_);
  const float* wt = wt_.data<float>();
  float* tb = scratch;
  const int nthreads = static_cast<int>(std::min<int64_t>(threads_, std::max(1, omp_get_max_threads())));
#pragma omp parallel for schedule(static) num_threads(nthreads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t n = task / blocks_per_image, h0 = (task % blocks_per_image) * rows_per_block_;
    const int64_t h1 = std::min(s.H, h0 + rows_per_block_);
    // T rows reaching [h0, h1): oh * S + kh - P in [h0, h1) for some kh < K.
    const int64_t lo = h0 + s.P - (s.K - 1);
    const int64_t oh0 = lo <= 0 ? 0 : (lo + s.S - 1) / s.S;
    const int64_t oh1 = std::min(s.Ho, (h1 - 1 + s.P) / s.S + 1);
    float* T = tb + omp_get_thread_num() * t_stride();
    for (int64_t oh = oh0; oh < oh1; ++oh) row(dy + ((n * s.Ho + oh) * s.Wo) * s.O, wt, T + (oh - oh0) * s.Wo * L, s.Wo, s.O);
    for (int64_t h = h0; h < h1; ++h) gather(s, T, oh0, L, woff_.data(), wcnt_.data(), n, h, dx);
  }
}

}  // namespace crackseg::onednn
