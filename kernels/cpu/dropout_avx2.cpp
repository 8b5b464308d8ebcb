// AVX2 variants of the dropout mask loops (dropout_simd.hpp), for CPUs without AVX-512
// (AMD Zen 2/3, older Intel): the 16 Philox blocks as two interleaved 8-lane halves, the
// kept elements selected by sign-bit blends. The same bits as the scalar and AVX-512 variants.
#include <immintrin.h>

#include "kernels/cpu/dropout_simd.hpp"

namespace crackseg::onednn::dropout_simd {
namespace {

// hi and lo 32 bits of the 8 products a * m (even and odd lanes separately).
__attribute__((target("avx2"))) inline void mul_hi_lo(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(a, m);                         // even lanes, 64-bit
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);  // odd lanes, 64-bit
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

struct Block8 {
  __m256i x0, x1, x2, x3;
};

// One Philox round (philox4x32) on 8 blocks.
__attribute__((target("avx2"))) inline void round8(Block8& b, __m256i m0, __m256i m1, __m256i kk0, __m256i kk1) {
  __m256i h0, l0, h1, l1;
  mul_hi_lo(b.x0, m0, h0, l0);
  mul_hi_lo(b.x2, m1, h1, l1);
  b.x0 = _mm256_xor_si256(_mm256_xor_si256(h1, b.x1), kk0);
  b.x1 = l1;
  b.x2 = _mm256_xor_si256(_mm256_xor_si256(h0, b.x3), kk1);
  b.x3 = l0;
}

// Bit b set when word w of block b keeps its element: (w >> 8) >= t. Both sides are below
// 2^25, so the signed compare is the unsigned one.
__attribute__((target("avx2"))) inline uint64_t keep8(__m256i w, __m256i t) {
  const __m256i drop = _mm256_cmpgt_epi32(t, _mm256_srli_epi32(w, 8));
  return ~static_cast<uint64_t>(_mm256_movemask_ps(_mm256_castsi256_ps(drop))) & 0xFFu;
}

}  // namespace

__attribute__((target("avx2,bmi2"))) uint64_t keep_bits_avx2(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t j0,
                                                              uint32_t k0, uint32_t k1, uint32_t ti) {
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(0xD2511F53u)), m1 = _mm256_set1_epi32(static_cast<int>(0xCD9E8D57u));
  const __m256i j = _mm256_set1_epi32(static_cast<int>(j0));
  Block8 a{_mm256_set1_epi32(static_cast<int>(c0)), _mm256_set1_epi32(static_cast<int>(c1)),
           _mm256_set1_epi32(static_cast<int>(c2)), _mm256_add_epi32(j, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))};
  Block8 b = a;
  b.x3 = _mm256_add_epi32(j, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
  for (int round = 0; round < 10; ++round) {
    const __m256i kk0 = _mm256_set1_epi32(static_cast<int>(k0)), kk1 = _mm256_set1_epi32(static_cast<int>(k1));
    round8(a, m0, m1, kk0, kk1);
    round8(b, m0, m1, kk0, kk1);
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  const __m256i t = _mm256_set1_epi32(static_cast<int>(ti));
  const auto keep = [&](__m256i lo, __m256i hi) __attribute__((target("avx2"))) { return keep8(lo, t) | keep8(hi, t) << 8; };
  constexpr uint64_t lane = 0x1111111111111111ull;
  return _pdep_u64(keep(a.x0, b.x0), lane) | _pdep_u64(keep(a.x1, b.x1), lane << 1) |
         _pdep_u64(keep(a.x2, b.x2), lane << 2) | _pdep_u64(keep(a.x3, b.x3), lane << 3);
}

__attribute__((target("avx2"))) void apply_rows_avx2(const uint64_t* rows, const float* x, float* y, int64_t npix,
                                                      int64_t C, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  if (C == 1) {  // one row: 8 pixels per register, bit i of a byte -> lane i
    const uint64_t r = rows[0];
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    int64_t k = 0;
    for (; k + 8 <= npix; k += 8) {
      const __m256i b = _mm256_and_si256(_mm256_set1_epi32(static_cast<int>((r >> k) & 0xFFu)), bit);
      const __m256 m = _mm256_castsi256_ps(_mm256_cmpeq_epi32(b, bit));
      _mm256_storeu_ps(y + k, _mm256_and_ps(m, _mm256_mul_ps(_mm256_loadu_ps(x + k), s)));
    }
    for (; k < npix; ++k) y[k] = (r >> k) & 1u ? x[k] * scale : 0.0f;
    return;
  }
  for (int64_t k = 0; k < npix; ++k) {
    // bit k of each row to its sign bit: the high half of each 64-bit lane holds it
    const __m128i shift = _mm_cvtsi64_si128(63 - k);
    const float* xp = x + k * C;
    float* yp = y + k * C;
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) {
      const __m256i r0 = _mm256_sll_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + c)), shift);
      const __m256i r1 = _mm256_sll_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + c + 4)), shift);
      // high halves: rows 0 1 4 5 | 2 3 6 7, then the 64-bit pairs back in order
      const __m256 h = _mm256_shuffle_ps(_mm256_castsi256_ps(r0), _mm256_castsi256_ps(r1), _MM_SHUFFLE(3, 1, 3, 1));
      const __m256 m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h), _MM_SHUFFLE(3, 1, 2, 0)));
      _mm256_storeu_ps(yp + c, _mm256_blendv_ps(_mm256_setzero_ps(), _mm256_mul_ps(_mm256_loadu_ps(xp + c), s), m));
    }
    for (; c < C; ++c) yp[c] = (rows[c] >> k) & 1u ? xp[c] * scale : 0.0f;
  }
}

}  // namespace crackseg::onednn::dropout_simd
