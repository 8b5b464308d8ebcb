#include "kernels/cpu/convt_narrow_wgrad.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include <omp.h>

#include "kernels/cpu/simd_switches.hpp"
#include "src/core/target_clones.hpp"

// GCC's -Wpsabi note (a 64-byte vector passed without AVX-512 changes the ABI) does not apply:
// every function taking or returning one here is always_inline within this file.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace crackseg::onednn {

namespace {

// The row loop comes in three variants (AVX-512 with 16-input vectors, AVX2 + FMA and the
// baseline with 8-input ones), everything below it always_inline so that each variant gets
// its own code. 8 on AVX2: 9 taps of 16-input vectors there are 18 ymm registers, more than
// AVX2 has (spilled: 1.75 ms a call at 2 threads on a Zen 3, 0.38 ms with 8). Each lane's sum
// is the same chain in every variant (FMA in both vector ones: the same bits on AVX-512 and
// AVX2).

__attribute__((always_inline)) inline float to_f(float v) { return v; }
__attribute__((always_inline)) inline float to_f(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }

// GCC vector types of VW inputs (one register in the matching variant); a local array of
// them stays in registers where intrinsics-free float arrays were spilled to the stack.
using F16 = float __attribute__((vector_size(64)));
using U32x16 = uint32_t __attribute__((vector_size(64)));
using U16x16 = uint16_t __attribute__((vector_size(32)));
using F8 = float __attribute__((vector_size(32)));
using U32x8 = uint32_t __attribute__((vector_size(32)));
using U16x8 = uint16_t __attribute__((vector_size(16)));
template <class FV, class U32V, class U16V>
struct VecOf {
  using V = FV;
  __attribute__((always_inline)) static V load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  __attribute__((always_inline)) static V load(const uint16_t* p) {  // bf16 bit patterns -> f32
    U16V h;
    std::memcpy(&h, p, sizeof(U16V));
    const U32V w = __builtin_convertvector(h, U32V) << 16;
    V v;
    std::memcpy(&v, &w, sizeof(V));
    return v;
  }
};
template <int VW>
struct Vec;
template <>
struct Vec<16> : VecOf<F16, U32x16, U16x16> {};
template <>
struct Vec<8> : VecOf<F8, U32x8, U16x8> {};

int64_t block_floats(const NarrowWgradShape& s) { return s.K * s.K * s.O * s.I; }

// Input row (n, ih)'s partial sums P[((kh*K + kw)*O + o)*I + i] over its W pixels.
// KC = K at compile time (2, 3, 4: every tap's accumulator in registers, K*K <= 16 of them),
// 0 = any K (the generic loop: one tap at a time, ~6x slower).
template <int VW, int KC, class T>
__attribute__((always_inline)) inline void row_partials(const NarrowWgradShape& s, const T* __restrict xr, const T* __restrict gimg, int64_t ih,
                  float* __restrict P) {
  using V = typename Vec<VW>::V;
  constexpr int64_t kV = VW;  // inputs per accumulator vector
  const int64_t K = KC ? KC : s.K, O = s.O, I = s.I, S = s.S, pad = s.pad, W = s.W, Wo = s.Wo;
  std::fill(P, P + K * K * O * I, 0.0f);
  // The fast path's output rows, one per kh; it runs only where every kh lands inside g.
  const T* grow[KC > 0 ? KC : 1] = {};
  bool all_kh = true;
  for (int64_t kh = 0; kh < K; ++kh) {
    const int64_t oh = S * ih + kh - pad;
    const bool ok = oh >= 0 && oh < s.Ho;
    all_kh = all_kh && ok;
    if constexpr (KC > 0) grow[kh] = ok ? gimg + oh * Wo * O : nullptr;
  }
  // Pixels whose every kw tap lands inside the row: [lo, hi).
  const int64_t lo = std::min<int64_t>(W, (pad + S - 1) / S);
  const int64_t last = Wo - 1 + pad - (K - 1);  // S*iw <= last
  const int64_t hi = last < 0 ? lo : std::max(lo, std::min<int64_t>(W, last / S + 1));
  // Generic taps (any K; the pixels outside [lo, hi) in the fast case), in (kh, kw, iw) order.
  const auto generic = [&](int64_t o, int64_t i0, int64_t n, int64_t iw_a, int64_t iw_b) __attribute__((always_inline)) {
    for (int64_t kh = 0; kh < K; ++kh) {
      const int64_t oh = S * ih + kh - pad;
      if (oh < 0 || oh >= s.Ho) continue;
      const T* gr = gimg + oh * Wo * O;
      for (int64_t kw = 0; kw < K; ++kw) {
        float* __restrict p = P + ((kh * K + kw) * O + o) * I + i0;
        for (int64_t iw = iw_a; iw < iw_b; ++iw) {
          const int64_t ow = S * iw + kw - pad;
          if (ow < 0 || ow >= Wo) continue;
          const float gv = to_f(gr[ow * O + o]);
          const T* __restrict xv = xr + iw * I + i0;
#pragma omp simd
          for (int64_t j = 0; j < n; ++j) p[j] += gv * to_f(xv[j]);
        }
      }
    }
  };
  for (int64_t o = 0; o < O; ++o)
    for (int64_t i0 = 0; i0 < I; i0 += kV) {
      const int64_t n = std::min(kV, I - i0);
      if constexpr (KC > 0) {
        if (all_kh && n == kV && hi > lo) {
          V acc[KC * KC] = {};  // one register per tap: the row's 16-input sums
          for (int64_t iw = lo; iw < hi; ++iw) {
            const V xv = Vec<VW>::load(xr + iw * I + i0);
#pragma GCC unroll 4
            for (int kh = 0; kh < KC; ++kh)
#pragma GCC unroll 4
              for (int kw = 0; kw < KC; ++kw)
                acc[kh * KC + kw] += to_f(grow[kh][(S * iw + kw - pad) * O + o]) * xv;
          }
          for (int64_t t = 0; t < KC * KC; ++t) std::memcpy(P + (t * O + o) * I + i0, &acc[t], sizeof(V));
          generic(o, i0, n, 0, lo);
          generic(o, i0, n, hi, W);
          continue;
        }
      }
      generic(o, i0, n, 0, W);
    }
}

// Rows [r0, r1) of x: their partial blocks.
template <int VW, class T>
__attribute__((always_inline)) inline void row_range(const NarrowWgradShape& s, const T* x, const T* g, float* parts,
                                                int64_t r0, int64_t r1) {
  const int64_t B = block_floats(s);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t n = r / s.H, ih = r % s.H;
    const T* xr = x + r * s.W * s.I;
    const T* gimg = g + n * s.Ho * s.Wo * s.O;
    if (s.K == 3) row_partials<VW, 3>(s, xr, gimg, ih, parts + r * B);
    else if (s.K == 2) row_partials<VW, 2>(s, xr, gimg, ih, parts + r * B);  // the U-Net's up-convs
    else if (s.K == 4) row_partials<VW, 4>(s, xr, gimg, ih, parts + r * B);
    else row_partials<VW, 0>(s, xr, gimg, ih, parts + r * B);
  }
}
template <class T>
__attribute__((target("avx512f"))) void rows_avx512(const NarrowWgradShape& s, const T* x, const T* g, float* parts,
                                                    int64_t r0, int64_t r1) {
  row_range<16>(s, x, g, parts, r0, r1);
}
template <class T>
__attribute__((target("avx2,fma"))) void rows_avx2(const NarrowWgradShape& s, const T* x, const T* g, float* parts,
                                                   int64_t r0, int64_t r1) {
  row_range<8>(s, x, g, parts, r0, r1);
}
template <class T>
void rows_base(const NarrowWgradShape& s, const T* x, const T* g, float* parts, int64_t r0, int64_t r1) {
  row_range<8>(s, x, g, parts, r0, r1);
}
template <class T>
void rows_any(const NarrowWgradShape& s, const T* x, const T* g, float* parts, int64_t r0, int64_t r1) {
  if (avx512_enabled()) rows_avx512(s, x, g, parts, r0, r1);
  else if (avx2_enabled()) rows_avx2(s, x, g, parts, r0, r1);
  else rows_base(s, x, g, parts, r0, r1);
}

// acc[e] = sum over rows r (in order) of parts[r*B + e], for e in [e0, e1).
CRACKSEG_CLONES void sum_rows(const float* parts, int64_t rows, int64_t B, int64_t e0, int64_t e1, double* acc) {
  for (int64_t e = e0; e < e1; ++e) acc[e] = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = parts + r * B;
#pragma omp simd
    for (int64_t e = e0; e < e1; ++e) acc[e] += p[e];
  }
}

// One output row's sum per channel (a fixed vector-lane order for C = 1; any thread count).
template <class T>
void bias_row(const T* gr, int64_t Wo, int64_t O, float* out) {
  if (O == 1) {
    float a = 0.0f;
#pragma omp simd reduction(+ : a)
    for (int64_t w = 0; w < Wo; ++w) a += to_f(gr[w]);
    out[0] = a;
    return;
  }
  for (int64_t o = 0; o < O; ++o) out[o] = 0.0f;
  for (int64_t w = 0; w < Wo; ++w)
    for (int64_t o = 0; o < O; ++o) out[o] += to_f(gr[w * O + o]);
}

template <class T>
void run(const NarrowWgradShape& s, const T* x, const T* g, float* scratch, float* dW, float* db) {
  const int64_t rows = s.N * s.H, B = block_floats(s), K = s.K, O = s.O, I = s.I;
  float* parts = scratch;
  const bool par = rows * s.W * B > 262144;
#pragma omp parallel if (par)
  {
    const int64_t T_ = omp_get_num_threads(), t = omp_get_thread_num();
    rows_any(s, x, g, parts, rows * t / T_, rows * (t + 1) / T_);
  }
  // dW is (I, O, K, K); a partial block is ((kh, kw), o, i). Rows added in row order, each
  // element's sum its own chain (vectorised over elements, threads over element ranges).
  double* acc = reinterpret_cast<double*>(parts + ((rows * B + s.N * s.Ho * O + 1) / 2) * 2);  // 8-byte aligned
  const bool par_e = par && B >= 256;
#pragma omp parallel if (par_e)
  {
    const int64_t T_ = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t e0 = B * t / T_, e1 = B * (t + 1) / T_;
    sum_rows(parts, rows, B, e0, e1, acc);
  }
  for (int64_t e = 0; e < B; ++e) {
    const int64_t i = e % I, o = (e / I) % O, t = e / (I * O);
    dW[(i * O + o) * K * K + t] += static_cast<float>(acc[e]);
  }
  if (!db) return;
  const int64_t orows = s.N * s.Ho;
  float* rs = parts + rows * B;
#pragma omp parallel for schedule(static) if (par)
  for (int64_t r = 0; r < orows; ++r) bias_row(g + r * s.Wo * O, s.Wo, O, rs + r * O);
  for (int64_t o = 0; o < O; ++o) {
    double a = 0.0;
    for (int64_t r = 0; r < orows; ++r) a += rs[r * O + o];
    db[o] += static_cast<float>(a);
  }
}

}  // namespace

std::size_t narrow_wgrad_scratch_floats(const NarrowWgradShape& s) {
  // partial blocks, output-row bias sums, then block_floats doubles (2 floats each)
  return static_cast<std::size_t>(s.N * s.H * block_floats(s) + s.N * s.Ho * s.O + 2 * block_floats(s) + 2);
}

void narrow_convt_wgrad(const NarrowWgradShape& s, const float* x, const float* g, float* scratch, float* dW,
                        float* db) {
  run(s, x, g, scratch, dW, db);
}
void narrow_convt_wgrad(const NarrowWgradShape& s, const uint16_t* x, const uint16_t* g, float* scratch, float* dW,
                        float* db) {
  run(s, x, g, scratch, dW, db);
}

}  // namespace crackseg::onednn
