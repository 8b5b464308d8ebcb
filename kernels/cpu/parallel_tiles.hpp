// The two OpenMP work splits our elementwise and layout passes share, so each pass states only
// its per-piece body:
//   parallel_chunks(n, f):          f(begin, count) over [0, n) in chunks of 16K elements
//   parallel_pixel_tiles(N, HW, work, f): f(image, p0, p1) over each image's HW pixels in tiles
//                                   of 256 (threads only when `work` elements > 16K)
// Static schedules: which thread runs a piece never changes what the piece computes.
#pragma once
#include <algorithm>
#include <cstdint>

namespace crackseg::onednn {

template <class F>
inline void parallel_chunks(int64_t n, F&& f) {
  constexpr int64_t kChunk = 1 << 14;  // 64 KB of fp32 input per task
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) f(c * kChunk, std::min(kChunk, n - c * kChunk));
}

template <class F>
inline void parallel_pixel_tiles(int64_t N, int64_t HW, int64_t work, F&& f) {
  constexpr int64_t kTile = 256;  // a tile reads one contiguous stretch of nhwc pixels
  const int64_t tiles = (HW + kTile - 1) / kTile, total = N * tiles;
#pragma omp parallel for schedule(static) if (work > 16384)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t p0 = (t % tiles) * kTile;
    f(t / tiles, p0, std::min(HW, p0 + kTile));
  }
}

}  // namespace crackseg::onednn
