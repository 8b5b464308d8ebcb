// Dropout masks as tiles of keep-bit rows (see dropout_tiles.hpp). Philox blocks are computed
// 16 at a time in structure-of-arrays form (one block gives the words of 4 consecutive
// logical elements) by the widest variant the CPU has (dropout_simd.hpp); the scalar variants
// and the choice live here.
#include "kernels/cpu/dropout_tiles.hpp"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "kernels/cpu/dropout_simd.hpp"
#include "kernels/cpu/simd_switches.hpp"
#include "src/layers/dropout_mask.hpp"

namespace crackseg::onednn {

namespace dropout_simd {

uint64_t keep_bits_scalar(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t j0, uint32_t k0, uint32_t k1, uint32_t ti) {
  uint64_t bits = 0;
  for (uint32_t b = 0; b < 16; ++b) {
    const auto r = philox4x32({c0, c1, c2, j0 + b}, {k0, k1});
    for (int k = 0; k < 4; ++k)
      if ((r[static_cast<std::size_t>(k)] >> 8) >= ti) bits |= uint64_t{1} << (4 * b + k);
  }
  return bits;
}

void apply_rows_scalar(const uint64_t* rows, const float* x, float* y, int64_t npix, int64_t C, float scale) {
  for (int64_t k = 0; k < npix; ++k)
    for (int64_t c = 0; c < C; ++c) y[k * C + c] = (rows[c] >> k) & 1u ? x[k * C + c] * scale : 0.0f;
}

std::vector<Variant> runnable() {
  std::vector<Variant> v;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("bmi2"))
    v.push_back({"avx512", keep_bits_avx512, apply_rows_avx512});
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2")) v.push_back({"avx2", keep_bits_avx2, apply_rows_avx2});
  v.push_back({"scalar", keep_bits_scalar, apply_rows_scalar});
  return v;
}

const Variant& chosen() {
  static const Variant pick = [] {
    for (const Variant& v : runnable()) {
      const std::string_view isa = v.isa;
      if ((isa != "avx512" || avx512_enabled()) && (isa != "avx2" || avx2_enabled())) return v;
    }
    return Variant{"scalar", keep_bits_scalar, apply_rows_scalar};
  }();
  return pick;
}

}  // namespace dropout_simd

TileDraw tile_draw(const StepContext& ctx, uint32_t salt, float p) {
  const uint64_t key = dropout_key(ctx.seed, salt);
  // u24 * 2^-24 < p  <=>  u24 < ceil(p * 2^24) (exact in double)
  return {static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32), static_cast<uint32_t>(ctx.epoch),
          static_cast<uint32_t>(std::ceil(static_cast<double>(p) * 16777216.0))};
}

float dropout_scale(float p) { return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p); }

uint64_t* dropout_fill_tile(const DropoutTiles& s, const TileDraw& d, uint64_t sample, int64_t n, int64_t t,
                            uint64_t* words) {
  static const dropout_simd::KeepBits keep_bits = dropout_simd::chosen().keep_bits;
  const uint32_t c0 = static_cast<uint32_t>(sample);
  const uint32_t c1 = static_cast<uint32_t>(sample >> 32) ^ (static_cast<uint32_t>(Purpose::dropout) << 24);
  const int64_t p0 = DropoutTiles::first_pixel(t);
  const uint64_t used = (uint64_t{1} << s.pixels(t)) - 1u;  // pixels <= kTile < 64
  uint64_t* rows = words + (n * s.tiles + t) * s.C;
  for (int64_t c = 0; c < s.C; ++c) {
    const int64_t i0 = c * s.HW + p0;
    // bit j <-> logical element 4 * (i0 / 4) + j; the run starts at bit i0 % 4
    rows[c] = (keep_bits(c0, c1, d.epoch, static_cast<uint32_t>(i0 / 4), d.k0, d.k1, d.ti) >> (i0 % 4)) & used;
  }
  return rows;
}

void dropout_fill(const DropoutTiles& s, const TileDraw& d, std::span<const uint64_t> ids, uint64_t* words) {
  // layers::dropout_mask
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t t = 0; t < s.tiles; ++t) dropout_fill_tile(s, d, ids[static_cast<std::size_t>(n)], n, t, words);
}

void dropout_apply_rows(const uint64_t* rows, const float* x, float* y, int64_t npix, int64_t C, float scale) {
  static const dropout_simd::ApplyRows apply = dropout_simd::chosen().apply_rows;
  apply(rows, x, y, npix, C, scale);
}

}  // namespace crackseg::onednn
