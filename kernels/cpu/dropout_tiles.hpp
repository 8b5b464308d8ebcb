// The CPU backend's dropout mask in memory, shared by the dropout layer and by batchnorm with
// a fused dropout (batchnorm2d.cpp): which elements are dropped is src/layers/dropout_mask.hpp's
// rule, bit for bit; this is how the bits are laid out and produced fast.
//
// Elements are grouped in tiles of kTile pixels x all channels (contiguous in nhwc memory).
// A tile's mask is one 64-bit word per channel ("row"), bit k = pixel k of the tile: exactly
// the keep bits Philox gives for that channel's run of logical indices c*HW + p0 .. + kTile-1
// (16 consecutive Philox blocks, kTile + 3 <= 64 words whatever the alignment), so they are
// stored as they come, with no per-element transpose. One bit per element: 1/32 of the
// activation's bytes.
#pragma once
#include <cstdint>
#include <span>

#include "src/graph/layer.hpp"

namespace crackseg::onednn {

struct DropoutTiles {
  static constexpr int64_t kTile = 60;
  int64_t N = 0, C = 1, HW = 0, tiles = 0;

  DropoutTiles() = default;
  DropoutTiles(int64_t n, int64_t c, int64_t hw) : N(n), C(c), HW(hw), tiles((hw + kTile - 1) / kTile) {}
  [[nodiscard]] int64_t words() const { return N * tiles * C; }
  // The C rows of sample n's tile t.
  [[nodiscard]] static const uint64_t* rows(const uint64_t* w, const DropoutTiles& s, int64_t n, int64_t t) {
    return w + (n * s.tiles + t) * s.C;
  }
};

// One training forward's draw: the Philox key, the epoch word and the keep threshold
// (an element is kept when (word >> 8) >= ti, ti = ceil(p * 2^24): rng_uniform(...) >= p exactly).
struct TileDraw {
  uint32_t k0 = 0, k1 = 0, epoch = 0, ti = 0;
};
[[nodiscard]] TileDraw tile_draw(const StepContext& ctx, uint32_t salt, float p);
// Inverted dropout's scale of kept elements: 1 / (1 - p) (0 for p >= 1: nothing is kept).
[[nodiscard]] float dropout_scale(float p);

// Row of keep bits of `sample`'s channel c over pixels [p0, p0 + npix) (npix <= kTile).
[[nodiscard]] uint64_t dropout_row_bits(const TileDraw& d, uint64_t sample, int64_t c, int64_t p0, int64_t npix,
                                        int64_t HW);

// Every row of the mask for a batch (ids[n]: sample n's id), OpenMP over tiles.
void dropout_fill(const DropoutTiles& s, const TileDraw& d, std::span<const uint64_t> ids, uint64_t* words);

// y[k*C + c] = bit k of rows[c] ? x[k*C + c] * scale : 0 over one tile of npix pixels (y may
// be x); forward and backward of the dropout layer use the same mask the same way.
void dropout_apply_rows(const uint64_t* rows, const float* x, float* y, int64_t npix, int64_t C, float scale);

}  // namespace crackseg::onednn
