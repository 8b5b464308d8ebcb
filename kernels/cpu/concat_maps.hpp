// Concat of one-channel maps on AVX-512 (Spiral-Net: every module reads the concatenation of
// the earlier modules' 1-channel maps, and the head all seven). The copy loop of concat.cpp
// moves one float per map per pixel with a strided store; here 16 pixels of up to 16 maps are
// loaded as rows, transposed in registers (16x16), and each pixel's K channels stored with
// one masked store (and the reverse for the backward split). Plain copies: the same bits.
#pragma once
#include <cstdint>

namespace crackseg::onednn {

inline constexpr int64_t kMapsMax = 16;  // maps (= output channels) the kernel takes

// Whether it may run here: AVX-512 (kernels/cpu/simd_switches.hpp: CRACKSEG_NO_AVX512=1 off).
[[nodiscard]] bool concat_maps_available();
// whole[p * K + k] = maps[k][p] for p in [p0, p1), 1 <= K <= kMapsMax.
void maps_to_whole(float* whole, const float* const* maps, int64_t K, int64_t p0, int64_t p1);
// maps[k][p] = whole[p * K + k] for p in [p0, p1).
void whole_to_maps(const float* whole, float* const* maps, int64_t K, int64_t p0, int64_t p1);
// whole[p * K + k] = bf16(maps[k][p]) (vcvtneps2bf16: to_bf16.hpp's rounding, the same bits).
// Needs avx512bf16_available() (to_bf16.hpp).
void maps_to_whole_bf16(uint16_t* whole, const float* const* maps, int64_t K, int64_t p0, int64_t p1);

}  // namespace crackseg::onednn
