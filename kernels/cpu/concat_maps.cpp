// See concat_maps.hpp.
#include "kernels/cpu/concat_maps.hpp"

#include <immintrin.h>

#include "kernels/cpu/simd_switches.hpp"

namespace crackseg::onednn {
namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define CRACKSEG_AVX512 __attribute__((target("avx512f")))

CRACKSEG_AVX512 inline __m512 lo_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
CRACKSEG_AVX512 inline __m512 hi_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
// r[i][j] -> r[j][i]: pairs of floats, then pairs of pairs within 128-bit lanes, then lanes.
CRACKSEG_AVX512 inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = lo_pd(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 1] = hi_pd(t[4 * i + 0], t[4 * i + 2]);
    r[4 * i + 2] = lo_pd(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = hi_pd(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      t[8 * i + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] = _mm512_shuffle_f32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
  }
}

// 16 pixels from p of up to 16 maps (rows past K zero), transposed: r[j] = pixel p + j's channels.
CRACKSEG_AVX512 inline void load_pixels(const float* const* maps, int64_t K, int64_t p, __m512 r[16]) {
  for (int64_t k = 0; k < 16; ++k) r[k] = k < K ? _mm512_loadu_ps(maps[k] + p) : _mm512_setzero_ps();
  transpose16(r);
}

CRACKSEG_AVX512 void to_whole_avx512(float* whole, const float* const* maps, int64_t K, int64_t p0, int64_t p1) {
  const __mmask16 m = static_cast<__mmask16>((1u << K) - 1u);
  int64_t p = p0;
  for (; p + 16 <= p1; p += 16) {
    __m512 r[16];
    load_pixels(maps, K, p, r);
    for (int64_t j = 0; j < 16; ++j) _mm512_mask_storeu_ps(whole + (p + j) * K, m, r[j]);
  }
  for (; p < p1; ++p)
    for (int64_t k = 0; k < K; ++k) whole[p * K + k] = maps[k][p];
}

CRACKSEG_AVX512 void to_maps_avx512(const float* whole, float* const* maps, int64_t K, int64_t p0, int64_t p1) {
  const __mmask16 m = static_cast<__mmask16>((1u << K) - 1u);
  int64_t p = p0;
  for (; p + 16 <= p1; p += 16) {
    __m512 r[16];
    for (int64_t j = 0; j < 16; ++j) r[j] = _mm512_maskz_loadu_ps(m, whole + (p + j) * K);
    transpose16(r);
    for (int64_t k = 0; k < K; ++k) _mm512_storeu_ps(maps[k] + p, r[k]);
  }
  for (; p < p1; ++p)
    for (int64_t k = 0; k < K; ++k) maps[k][p] = whole[p * K + k];
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void to_whole_bf16_avx512(uint16_t* whole,
                                                                                          const float* const* maps,
                                                                                          int64_t K, int64_t p0,
                                                                                          int64_t p1) {
  const __mmask16 m = static_cast<__mmask16>((1u << K) - 1u);
  int64_t p = p0;
  for (; p + 16 <= p1; p += 16) {
    __m512 r[16];
    load_pixels(maps, K, p, r);
    for (int64_t j = 0; j < 16; ++j) {
      const __m256bh v = _mm512_cvtneps_pbh(r[j]);
      _mm256_mask_storeu_epi16(whole + (p + j) * K, m, reinterpret_cast<const __m256i&>(v));
    }
  }
  if (p == p1) return;
  // the tail: one masked vector per map over the remaining pixels, the same instruction
  const auto tm = static_cast<__mmask16>((1u << (p1 - p)) - 1u);
  for (int64_t k = 0; k < K; ++k) {
    alignas(32) uint16_t b[16];
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tm, maps[k] + p));
    _mm256_store_si256(reinterpret_cast<__m256i*>(b), reinterpret_cast<const __m256i&>(v));
    for (int64_t q = p; q < p1; ++q) whole[q * K + k] = b[q - p];
  }
}
#undef CRACKSEG_AVX512
#pragma GCC diagnostic pop

}  // namespace

bool concat_maps_available() { return avx512_enabled(); }

void maps_to_whole(float* whole, const float* const* maps, int64_t K, int64_t p0, int64_t p1) {
  to_whole_avx512(whole, maps, K, p0, p1);
}
void whole_to_maps(const float* whole, float* const* maps, int64_t K, int64_t p0, int64_t p1) {
  to_maps_avx512(whole, maps, K, p0, p1);
}
void maps_to_whole_bf16(uint16_t* whole, const float* const* maps, int64_t K, int64_t p0, int64_t p1) {
  to_whole_bf16_avx512(whole, maps, K, p0, p1);
}

}  // namespace crackseg::onednn
