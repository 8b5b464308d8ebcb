// The dropout draw of one element, shared by every backend (host and device code: the
// functions are constexpr, and nvcc compiles them for the device with
// --expt-relaxed-constexpr). Element i of batch item `sample` in the layer salted `salt`
// (name_salt of the node name) is dropped when
//   rng_uniform(key, epoch, sample, Purpose::dropout, counter) < p,
//   key = seed ^ (salt << 32), counter = i,
// i being the LOGICAL (c, h, w) index (c*H + h)*W + w (or the feature index of a 2-D
// input), whatever the memory format. The salt must be in the 64-bit key, never in the
// counter: rng_word keeps only 32 bits of the block index counter / 4, so a counter of
// (salt << 32) + i would keep just salt & 3 (layers whose salts agree mod 4 would drop the
// same elements). kernels/cpu/dropout.cpp, kernels/reference/eltwise.cpp and
// kernels/cuda/dropout.cu all go through this header; tests/unit/test_dropout_draw.cpp pins
// it against the CPU kernel's mask.
#pragma once
#include <cstdint>

#include "src/core/rng.hpp"

namespace crackseg {

struct DropoutDraw {
  uint64_t key = 0;      // Philox key (seed and salt)
  uint64_t counter = 0;  // position in the (key, epoch, sample, dropout) stream
};

[[nodiscard]] constexpr uint64_t dropout_key(uint64_t seed, uint32_t salt) {
  return seed ^ (static_cast<uint64_t>(salt) << 32);
}

[[nodiscard]] constexpr DropoutDraw dropout_draw(uint64_t seed, uint32_t salt, uint64_t logical_index) {
  return {dropout_key(seed, salt), logical_index};
}

// Logical index of the element at offset `r` inside one batch item of a (C, H, W) tensor
// stored nhwc (channels innermost) or nchw / 2-D (memory order is logical order).
[[nodiscard]] constexpr uint64_t dropout_logical_index(int64_t r, int64_t c, int64_t h, int64_t w, bool nhwc) {
  if (!nhwc) return static_cast<uint64_t>(r);
  return static_cast<uint64_t>((r % c) * (h * w) + r / c);
}

[[nodiscard]] constexpr float dropout_uniform(uint64_t seed, uint32_t salt, uint64_t epoch, uint64_t sample,
                                              uint64_t logical_index) {
  const DropoutDraw d = dropout_draw(seed, salt, logical_index);
  return rng_uniform(d.key, epoch, sample, Purpose::dropout, d.counter);
}

[[nodiscard]] constexpr bool dropout_drops(uint64_t seed, uint32_t salt, uint64_t epoch, uint64_t sample,
                                           uint64_t logical_index, float p) {
  return dropout_uniform(seed, salt, epoch, sample, logical_index) < p;
}

}  // namespace crackseg
