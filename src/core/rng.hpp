// Counter-based random numbers (Philox4x32-10, Salmon et al. SC'11). Every random draw for a
// sample is a pure function of (seed, epoch, global sample index, purpose, counter), never of
// rank, thread or call order: this is what makes 1, 2 and 4 ranks produce the same numbers.
//
//   SampleRng rng(seed, epoch, sample_index, Purpose::crop);
//   float u = rng.uniform();          // [0, 1)
//   float g = rng.normal();           // N(0, 1)
//
// Streams with different purposes are independent; draws within a stream follow a counter.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace crackseg {

enum class Purpose : uint32_t {
  permutation = 1,  // epoch order
  crop = 2,
  augment = 3,
  patch = 4,        // patch CNN pixel choice
  dropout = 5,
  init = 6,         // weight initialisation (sample index = parameter index)
  synth = 7,        // synthetic data generator (sample index = image index)
  split = 8,        // dataset split assignment
  noise = 9,
};

// One Philox4x32-10 block: 4 x 32 random bits from a 128-bit counter and a 64-bit key.
[[nodiscard]] constexpr std::array<uint32_t, 4> philox4x32(std::array<uint32_t, 4> ctr,
                                                           std::array<uint32_t, 2> key) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(M0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(M1) * ctr[2];
    ctr = {static_cast<uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<uint32_t>(p1),
           static_cast<uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<uint32_t>(p0)};
    key[0] += W0;
    key[1] += W1;
  }
  return ctr;
}

class SampleRng {
 public:
  constexpr SampleRng(uint64_t seed, uint64_t epoch, uint64_t sample, Purpose purpose)
      : key_{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)},
        epoch_(static_cast<uint32_t>(epoch)),
        sample_lo_(static_cast<uint32_t>(sample)),
        sample_hi_purpose_(static_cast<uint32_t>(sample >> 32) ^
                           (static_cast<uint32_t>(purpose) << 24)) {}

  // Raw 32 bits; the n-th call returns word n%4 of block n/4.
  [[nodiscard]] constexpr uint32_t next_u32() {
    if (idx_ == 4) {
      block_ = philox4x32({sample_lo_, sample_hi_purpose_, epoch_, counter_++}, key_);
      idx_ = 0;
    }
    return block_[idx_++];
  }
  // Uniform in [0, 1) with 24 bits of resolution (exact in float).
  [[nodiscard]] constexpr float uniform() { return static_cast<float>(next_u32() >> 8) * 0x1.0p-24f; }
  [[nodiscard]] double uniform_double() {
    const uint64_t hi = next_u32() >> 5, lo = next_u32() >> 6;
    return (static_cast<double>(hi) * 67108864.0 + static_cast<double>(lo)) * 0x1.0p-53;
  }
  // Uniform in [lo, hi).
  [[nodiscard]] constexpr float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n) (Lemire's multiply-shift, bias < 2^-32 * n).
  [[nodiscard]] constexpr uint32_t below(uint32_t n) {
    return static_cast<uint32_t>((static_cast<uint64_t>(next_u32()) * n) >> 32);
  }
  // Standard normal by Box-Muller (one value per two uniforms; deterministic).
  [[nodiscard]] float normal() {
    const float u1 = (static_cast<float>(next_u32() >> 8) + 1.0f) * 0x1.0p-24f;  // (0, 1]
    const float u2 = uniform();
    return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853071795864f * u2);
  }
  [[nodiscard]] bool bernoulli(float p) { return uniform() < p; }

 private:
  std::array<uint32_t, 2> key_;
  uint32_t epoch_, sample_lo_, sample_hi_purpose_;
  uint32_t counter_ = 0;
  std::array<uint32_t, 4> block_{};
  int idx_ = 4;
};

// Stateless access for kernels: the word at position `i` of the stream, so element i of a
// dropout mask is independent of how a loop is split over threads.
[[nodiscard]] constexpr uint32_t rng_word(uint64_t seed, uint64_t epoch, uint64_t sample,
                                          Purpose purpose, uint64_t i) {
  const auto block = philox4x32({static_cast<uint32_t>(sample),
                                 static_cast<uint32_t>(sample >> 32) ^ (static_cast<uint32_t>(purpose) << 24),
                                 static_cast<uint32_t>(epoch), static_cast<uint32_t>(i / 4)},
                                {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
  return block[i % 4];
}
[[nodiscard]] constexpr float rng_uniform(uint64_t seed, uint64_t epoch, uint64_t sample,
                                          Purpose purpose, uint64_t i) {
  return static_cast<float>(rng_word(seed, epoch, sample, purpose, i) >> 8) * 0x1.0p-24f;
}

// The epoch's sample order: a permutation of [0, n) from (seed, epoch) only (Fisher-Yates
// driven by SampleRng with sample index = n, purpose permutation).
[[nodiscard]] std::vector<uint32_t> epoch_permutation(uint64_t seed, uint64_t epoch, uint32_t n);

}  // namespace crackseg
