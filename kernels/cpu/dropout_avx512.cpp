// AVX-512 variants of the dropout mask loops (dropout_simd.hpp): 16 Philox blocks in the
// 16 lanes, mask registers for the kept elements.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/dropout_simd.hpp"

namespace crackseg::onednn::dropout_simd {
namespace {

// GCC 12's AVX-512 intrinsic headers trip -Wuninitialized (their _mm512_undefined_*
// placeholders); the warning is about the headers, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// hi and lo 32 bits of the 16 products a * m (AVX-512: even and odd lanes separately).
__attribute__((target("avx512f"))) inline void mul_hi_lo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __mmask16 odd = 0xAAAA;
  const __m512i pe = _mm512_mul_epu32(a, m);                         // even lanes, 64-bit
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // odd lanes, 64-bit
  hi = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(pe, 32), po);
  lo = _mm512_mask_blend_epi32(odd, pe, _mm512_slli_epi64(po, 32));
}

}  // namespace

// The same 16 blocks in AVX-512 lanes; the comparisons give one 16-bit mask per word
// position, interleaved into bit 4b + k with pdep.
__attribute__((target("avx512f,bmi2"))) uint64_t keep_bits_avx512(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t j0,
                                                                   uint32_t k0, uint32_t k1, uint32_t ti) {
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u)), m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  __m512i x0 = _mm512_set1_epi32(static_cast<int>(c0)), x1 = _mm512_set1_epi32(static_cast<int>(c1));
  __m512i x2 = _mm512_set1_epi32(static_cast<int>(c2));
  __m512i x3 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(j0)),
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  for (int round = 0; round < 10; ++round) {
    __m512i h0, l0, h1, l1;
    mul_hi_lo(x0, m0, h0, l0);
    mul_hi_lo(x2, m1, h1, l1);
    const __m512i kk0 = _mm512_set1_epi32(static_cast<int>(k0)), kk1 = _mm512_set1_epi32(static_cast<int>(k1));
    x0 = _mm512_xor_si512(_mm512_xor_si512(h1, x1), kk0);
    x1 = l1;
    x2 = _mm512_xor_si512(_mm512_xor_si512(h0, x3), kk1);
    x3 = l0;
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  const __m512i t = _mm512_set1_epi32(static_cast<int>(ti));
  auto keep = [&](__m512i w) __attribute__((target("avx512f"))) {
    return static_cast<uint64_t>(_mm512_cmpge_epu32_mask(_mm512_srli_epi32(w, 8), t));
  };
  constexpr uint64_t lane = 0x1111111111111111ull;
  return _pdep_u64(keep(x0), lane) | _pdep_u64(keep(x1), lane << 1) | _pdep_u64(keep(x2), lane << 2) |
         _pdep_u64(keep(x3), lane << 3);
}

namespace {

// Keep mask of channels [c, c + 16) of one pixel: bit k of each of the 16 rows.
__attribute__((target("avx512f"))) inline __mmask16 pixel_mask16(const uint64_t* rows, __m128i shift) {
  const __m512i one = _mm512_set1_epi64(1);
  const __mmask8 lo = _mm512_test_epi64_mask(_mm512_srl_epi64(_mm512_loadu_si512(rows), shift), one);
  const __mmask8 hi = _mm512_test_epi64_mask(_mm512_srl_epi64(_mm512_loadu_si512(rows + 8), shift), one);
  return static_cast<__mmask16>(lo | (static_cast<unsigned>(hi) << 8));
}
// The same for up to 8 channels left (tail = which of them exist).
__attribute__((target("avx512f"))) inline __mmask8 pixel_mask8(const uint64_t* rows, __m128i shift, __mmask8 tail) {
  return _mm512_test_epi64_mask(_mm512_srl_epi64(_mm512_maskz_loadu_epi64(tail, rows), shift), _mm512_set1_epi64(1)) &
         tail;
}

}  // namespace

__attribute__((target("avx512f"))) void apply_rows_avx512(const uint64_t* rows, const float* x, float* y, int64_t npix,
                                                          int64_t C, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  if (C == 1) {  // one row: 16 pixels per mask register
    const uint64_t r = rows[0];
    int64_t k = 0;
    for (; k + 16 <= npix; k += 16)
      _mm512_storeu_ps(y + k, _mm512_maskz_mul_ps(static_cast<__mmask16>(r >> k), _mm512_loadu_ps(x + k), s));
    if (k < npix) {
      const auto tail = static_cast<__mmask16>((1u << (npix - k)) - 1u);
      const auto m = static_cast<__mmask16>(r >> k) & tail;
      _mm512_mask_storeu_ps(y + k, tail, _mm512_maskz_mul_ps(m, _mm512_maskz_loadu_ps(tail, x + k), s));
    }
    return;
  }
  for (int64_t k = 0; k < npix; ++k) {
    const __m128i shift = _mm_cvtsi64_si128(k);
    const float* xp = x + k * C;
    float* yp = y + k * C;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16)
      _mm512_storeu_ps(yp + c, _mm512_maskz_mul_ps(pixel_mask16(rows + c, shift), _mm512_loadu_ps(xp + c), s));
    for (; c < C; c += 8) {  // up to 8 channels left
      const auto tail = static_cast<__mmask8>((1u << std::min<int64_t>(8, C - c)) - 1u);
      const __mmask8 m = pixel_mask8(rows + c, shift, tail);
      _mm512_mask_storeu_ps(yp + c, tail, _mm512_maskz_mul_ps(m, _mm512_maskz_loadu_ps(tail, xp + c), s));
    }
  }
}

#pragma GCC diagnostic pop

}  // namespace crackseg::onednn::dropout_simd
