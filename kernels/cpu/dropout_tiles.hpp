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
#include <algorithm>
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
  // Tile t's pixels: [first_pixel(t), first_pixel(t) + pixels(t)).
  [[nodiscard]] static int64_t first_pixel(int64_t t) { return t * kTile; }
  [[nodiscard]] int64_t pixels(int64_t t) const { return std::min(HW, (t + 1) * kTile) - t * kTile; }
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

// The C rows of batch item n's tile t (its sample id: `sample`), written into `words`;
// returns them. The dropout layer calls it tile by tile (and applies the tile while it is in
// cache), dropout_fill for a whole batch.
uint64_t* dropout_fill_tile(const DropoutTiles& s, const TileDraw& d, uint64_t sample, int64_t n, int64_t t,
                            uint64_t* words);

// Every row of the mask for a batch (ids[n]: sample n's id), OpenMP over tiles.
void dropout_fill(const DropoutTiles& s, const TileDraw& d, std::span<const uint64_t> ids, uint64_t* words);

// y[k*C + c] = bit k of rows[c] ? x[k*C + c] * scale : 0 over one tile of npix pixels (y may
// be x); forward and backward of the dropout layer use the same mask the same way.
void dropout_apply_rows(const uint64_t* rows, const float* x, float* y, int64_t npix, int64_t C, float scale);

}  // namespace crackseg::onednn
