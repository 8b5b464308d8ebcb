// The two inner loops of the CPU dropout mask (dropout_tiles.hpp), one variant per
// instruction set: AVX-512 (dropout_avx512.cpp), AVX2 (dropout_avx2.cpp) and portable scalar
// code (dropout_tiles.cpp). Every variant gives the same bits: the keep bits are integer
// Philox, the kept values one multiply each (tests/unit/test_dropout_simd.cpp runs each
// variant this CPU has against the scalar one).
#pragma once
#include <cstdint>
#include <vector>

namespace crackseg::onednn::dropout_simd {

// Keep bits of the 16 Philox blocks with counters {c0, c1, c2, j0 + b}, b < 16, key {k0, k1}:
// bit 4b + k is 1 when word k of block b keeps its element ((word >> 8) >= ti).
using KeepBits = uint64_t (*)(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t j0, uint32_t k0, uint32_t k1,
                              uint32_t ti);
// y[k*C + c] = bit k of rows[c] ? x[k*C + c] * scale : +0 over npix (< 64) pixels; y may be x.
using ApplyRows = void (*)(const uint64_t* rows, const float* x, float* y, int64_t npix, int64_t C, float scale);

uint64_t keep_bits_scalar(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t);
uint64_t keep_bits_avx2(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t);    // avx2, bmi2
uint64_t keep_bits_avx512(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t);  // avx512f, bmi2
void apply_rows_scalar(const uint64_t*, const float*, float*, int64_t, int64_t, float);
void apply_rows_avx2(const uint64_t*, const float*, float*, int64_t, int64_t, float);  // avx2
void apply_rows_avx512(const uint64_t*, const float*, float*, int64_t, int64_t, float);  // avx512f

struct Variant {
  const char* isa;
  KeepBits keep_bits;
  ApplyRows apply_rows;
};
// The variants this CPU can run, widest first, scalar last (ignores the switches below).
[[nodiscard]] std::vector<Variant> runnable();
// The one dropout uses: the widest runnable one that simd_switches.hpp allows (read at the
// first call in the process).
[[nodiscard]] const Variant& chosen();

}  // namespace crackseg::onednn::dropout_simd
