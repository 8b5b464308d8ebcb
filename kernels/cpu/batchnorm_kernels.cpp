// Batchnorm kernels (see batchnorm_kernels.hpp for what and why).
//
// Each row function is compiled for AVX-512, AVX2 and the baseline (GCC target_clones picks
// one at load time; the build has no -march); the channel loops vectorise over C (nhwc: one
// pixel's channels are contiguous), the C = 1 case over the row's pixels. OpenMP splits rows
// in the callers, outside the cloned functions.
#include "kernels/cpu/batchnorm_kernels.hpp"

#include "kernels/cpu/to_bf16.hpp"
#include "src/core/target_clones.hpp"

#include <algorithm>
#include <cmath>

namespace crackseg::onednn {
namespace {

// Channels go in groups of NB blocks of kB floats (one AVX-512 register each; NB = 4, 2, 1
// as the channels left allow) with the group's accumulators in locals, so they stay in
// registers while the row's pixels stream through in memory order; channels left over
// (C not a multiple of kB) run the same arithmetic with a runtime-length inner loop.
constexpr int64_t kB = 16;

// Calls f.template operator()<L>(c0) for each channel group [c0, c0 + L) covering [0, C), with
// L = 64, 32, 16 while whole blocks remain and then L = 0 meaning "the remaining C - c0".
// Everything here is always_inline: inlined into each target_clones variant, it is compiled
// for that variant's instruction set (a call would run baseline code).
template <class F>
__attribute__((always_inline)) inline void for_channel_groups(int64_t C, F&& f) {
  int64_t c0 = 0;
  for (; C - c0 >= 4 * kB; c0 += 4 * kB) f.template operator()<4 * kB>(c0);
  if (C - c0 >= 2 * kB) f.template operator()<2 * kB>(c0), c0 += 2 * kB;
  if (C - c0 >= kB) f.template operator()<kB>(c0), c0 += kB;
  if (c0 < C) f.template operator()<0>(c0);
}

// Row r's per-channel sum rs[c] and sum of squared deviations from the row's own mean m2[c].
CRACKSEG_CLONES void row_stats(const float* __restrict x, int64_t W, int64_t C, float* __restrict rs,
                               float* __restrict m2) {
  const float inv = 1.0f / static_cast<float>(W);
  if (C == 1) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t w = 0; w < W; ++w) s += x[w];
    const float m = s * inv;
    float q = 0.0f;
#pragma omp simd reduction(+ : q)
    for (int64_t w = 0; w < W; ++w) q += (x[w] - m) * (x[w] - m);
    rs[0] = s, m2[0] = q;
    return;
  }
  for_channel_groups(C, [&]<int64_t L>(int64_t c0) __attribute__((always_inline)) {
    constexpr int64_t M = L ? L : kB;
    const int64_t n = L ? L : C - c0;
    float acc[M] = {}, mean[M] = {}, dev[M] = {};
    for (int64_t w = 0; w < W; ++w)
#pragma omp simd
      for (int64_t j = 0; j < (L ? L : n); ++j) acc[j] += x[w * C + c0 + j];
    for (int64_t j = 0; j < n; ++j) mean[j] = acc[j] * inv;
    for (int64_t w = 0; w < W; ++w)
#pragma omp simd
      for (int64_t j = 0; j < (L ? L : n); ++j) dev[j] += (x[w * C + c0 + j] - mean[j]) * (x[w * C + c0 + j] - mean[j]);
    for (int64_t j = 0; j < n; ++j) rs[c0 + j] = acc[j], m2[c0 + j] = dev[j];
  });
}

// A fused dropout's mask as one row of pixels sees it: pixel w of the row is pixel p0 + w of
// its sample, whose keep bit for channel c is bit (p % kTile) of word (p / kTile) * C + c
// (dropout_tiles.hpp), read in place: no expanded copy.
struct RowDrop {
  const uint64_t* words = nullptr;  // the sample's tiles
  int64_t p0 = 0;
  float scale = 0.0f;
};

// Calls f.template operator()<D>() with D = (rd != nullptr): the row loops below are compiled
// once with a fused dropout and once without.
template <class F>
__attribute__((always_inline)) inline void with_dropout(const RowDrop* rd, F&& f) {
  if (rd)
    f.template operator()<true>();
  else
    f.template operator()<false>();
}
// The keep words of pixel w's tile and the pixel's bit position in them.
__attribute__((always_inline)) inline const uint64_t* tile_words(const RowDrop* rd, int64_t w, int64_t C,
                                                                  unsigned& bit) {
  const int64_t p = rd->p0 + w, t = p / DropoutTiles::kTile;
  bit = static_cast<unsigned>(p - t * DropoutTiles::kTile);
  return rd->words + t * C;
}
// A fused dropout's effect on u (channel word `word` of the pixel's tile): the dropout
// layer's own `kept ? u * scale : 0`, bit for bit.
template <bool D>
__attribute__((always_inline)) inline float dropped(float u, uint64_t word, unsigned bit, float scale) {
  if constexpr (D)
    return (word >> bit) & 1u ? u * scale : 0.0f;
  else
    return u;
}

// y = drop(act((x - m) * a + b)) over one row of W pixels (y may be x; rd: the row's fused
// dropout or null). Subtracting the mean first keeps the precision of data far from zero
// (x * a + (b - m * a) would cancel).
CRACKSEG_CLONES void row_apply(const float* x, float* y, int64_t W, int64_t C, const float* __restrict m,
                               const float* __restrict a, const float* __restrict b, bool act, float slope,
                               const RowDrop* rd) {
  with_dropout(rd, [&]<bool D>() __attribute__((always_inline)) {
    const float sc = D ? rd->scale : 1.0f;
    if (C == 1) {
      const float m0 = m[0], a0 = a[0], b0 = b[0];
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) {
        const float v = (x[w] - m0) * a0 + b0;
        unsigned bit = 0;
        const uint64_t word = D ? *tile_words(rd, w, 1, bit) : 0;
        y[w] = dropped<D>(act && !(v > 0.0f) ? v * slope : v, word, bit, sc);
      }
      return;
    }
    for_channel_groups(C, [&]<int64_t L>(int64_t c0) __attribute__((always_inline)) {
      constexpr int64_t M = L ? L : kB;
      const int64_t n = L ? L : C - c0;
      float mb[M] = {}, ab[M] = {}, bb[M] = {};
      for (int64_t j = 0; j < n; ++j) mb[j] = m[c0 + j], ab[j] = a[c0 + j], bb[j] = b[c0 + j];
      for (int64_t w = 0; w < W; ++w) {
        unsigned bit = 0;
        const uint64_t* tw = D ? tile_words(rd, w, C, bit) + c0 : nullptr;
#pragma omp simd
        for (int64_t j = 0; j < (L ? L : n); ++j) {
          const int64_t i = w * C + c0 + j;
          const float v = (x[i] - mb[j]) * ab[j] + bb[j];
          y[i] = dropped<D>(act && !(v > 0.0f) ? v * slope : v, D ? tw[j] : 0, bit, sc);
        }
      }
    });
  });
}

// Backward sums over one row: sg[c] = sum g, sgx[c] = sum g * (x - mean[c]), g = drop(dy) *
// act'(v). The activation's derivative comes from v = (x - mean) * a + b recomputed with
// forward's constants and forward's expression (this file is built without FMA contraction),
// so its sign is the one forward saw, bit for bit, and the saved output is never read.
CRACKSEG_CLONES void row_bwd_sums(const float* __restrict x, const float* __restrict dy, int64_t W, int64_t C,
                                  const float* __restrict mean, const float* __restrict fa,
                                  const float* __restrict fb, bool act, float slope, const RowDrop* rd,
                                  float* __restrict sg, float* __restrict sgx) {
  with_dropout(rd, [&]<bool D>() __attribute__((always_inline)) {
    const float sc = D ? rd->scale : 1.0f;
    if (C == 1) {
      const float m = mean[0], a = fa[0], b = fb[0];
      float s = 0.0f, t = 0.0f;
#pragma omp simd reduction(+ : s, t)
      for (int64_t w = 0; w < W; ++w) {
        unsigned bit = 0;
        const uint64_t word = D ? *tile_words(rd, w, 1, bit) : 0;
        const float d = x[w] - m, u = dropped<D>(dy[w], word, bit, sc);
        const float g = act && !(d * a + b > 0.0f) ? u * slope : u;
        s += g;
        t += g * d;
      }
      sg[0] = s, sgx[0] = t;
      return;
    }
    for_channel_groups(C, [&]<int64_t L>(int64_t c0) __attribute__((always_inline)) {
      constexpr int64_t M = L ? L : kB;
      const int64_t n = L ? L : C - c0;
      float s[M] = {}, t[M] = {}, m[M] = {}, a[M] = {}, b[M] = {};
      for (int64_t j = 0; j < n; ++j) m[j] = mean[c0 + j], a[j] = fa[c0 + j], b[j] = fb[c0 + j];
      for (int64_t w = 0; w < W; ++w) {
        unsigned bit = 0;
        const uint64_t* tw = D ? tile_words(rd, w, C, bit) + c0 : nullptr;
#pragma omp simd
        for (int64_t j = 0; j < (L ? L : n); ++j) {
          const int64_t i = w * C + c0 + j;
          const float d = x[i] - m[j], u = dropped<D>(dy[i], D ? tw[j] : 0, bit, sc);
          const float g = act && !(d * a[j] + b[j] > 0.0f) ? u * slope : u;
          s[j] += g;
          t[j] += g * d;
        }
      }
      for (int64_t j = 0; j < n; ++j) sg[c0 + j] = s[j], sgx[c0 + j] = t[j];
    });
  });
}

// dx = k1 * g + k2 * (x - mean) + k3 over one row, g = drop(dy) * act'(v) as in row_bwd_sums.
CRACKSEG_CLONES void row_bwd_apply(const float* __restrict x, const float* __restrict dy, float* __restrict dx,
                                   int64_t W, int64_t C, const float* __restrict mean, const float* __restrict fa,
                                   const float* __restrict fb, const float* __restrict k1,
                                   const float* __restrict k2, const float* __restrict k3, bool act, float slope,
                                   const RowDrop* rd) {
  with_dropout(rd, [&]<bool D>() __attribute__((always_inline)) {
    const float sc = D ? rd->scale : 1.0f;
    if (C == 1) {
      const float m = mean[0], a = fa[0], b = fb[0], a1 = k1[0], a2 = k2[0], a3 = k3[0];
#pragma omp simd
      for (int64_t w = 0; w < W; ++w) {
        unsigned bit = 0;
        const uint64_t word = D ? *tile_words(rd, w, 1, bit) : 0;
        const float d = x[w] - m, u = dropped<D>(dy[w], word, bit, sc);
        const float g = act && !(d * a + b > 0.0f) ? u * slope : u;
        dx[w] = a1 * g + a2 * d + a3;
      }
      return;
    }
    for_channel_groups(C, [&]<int64_t L>(int64_t c0) __attribute__((always_inline)) {
      constexpr int64_t M = L ? L : kB;
      const int64_t n = L ? L : C - c0;
      float m[M] = {}, a[M] = {}, b[M] = {}, a1[M] = {}, a2[M] = {}, a3[M] = {};
      for (int64_t j = 0; j < n; ++j)
        m[j] = mean[c0 + j], a[j] = fa[c0 + j], b[j] = fb[c0 + j], a1[j] = k1[c0 + j], a2[j] = k2[c0 + j],
        a3[j] = k3[c0 + j];
      for (int64_t w = 0; w < W; ++w) {
        unsigned bit = 0;
        const uint64_t* tw = D ? tile_words(rd, w, C, bit) + c0 : nullptr;
#pragma omp simd
        for (int64_t j = 0; j < (L ? L : n); ++j) {
          const int64_t i = w * C + c0 + j;
          const float d = x[i] - m[j], u = dropped<D>(dy[i], D ? tw[j] : 0, bit, sc);
          const float g = act && !(d * a[j] + b[j] > 0.0f) ? u * slope : u;
          dx[i] = a1[j] * g + a2[j] * d + a3[j];
        }
      }
    });
  });
}

// Row r's view of a fused dropout (r = sample r / H, image row r % H), or null without one.
RowDrop row_drop(const BnDropout* drop, int64_t r, int64_t W) {
  if (!drop || !drop->words) return {};
  const int64_t H = drop->tiles.HW / W, n = r / H;
  return {drop->words + n * drop->tiles.tiles * drop->tiles.C, (r - n * H) * W, drop->scale};
}

// This thread's buffer for one row in fp32 before it is rounded to a bf16 output (kept in
// cache; grown once, so nothing is allocated in steady state).
float* row_buffer(int64_t n) {
  thread_local std::vector<float> row;
  if (row.size() < static_cast<std::size_t>(n)) row.resize(static_cast<std::size_t>(n));
  return row.data();
}

[[nodiscard]] bool parallel(const BnShape& s) { return s.pixels() * s.channels > 32768; }

}  // namespace

void bn_batch_stats(const float* x, const BnShape& s, BnWork& work, std::span<double> mean, std::span<double> var) {
  const int64_t R = s.rows, W = s.width, C = s.channels;
  float* rs = work.a();
  float* m2 = work.b();
#pragma omp parallel for schedule(static) if (parallel(s))
  for (int64_t r = 0; r < R; ++r) row_stats(x + r * W * C, W, C, rs + r * C, m2 + r * C);
  // Chan et al.: merge the rows' (count W, mean, M2) in row order, in double.
  for (int64_t c = 0; c < C; ++c) mean[c] = 0.0, var[c] = 0.0;
  const double w = static_cast<double>(W);
  for (int64_t r = 0; r < R; ++r) {
    const double n_a = w * static_cast<double>(r), n = n_a + w;
    for (int64_t c = 0; c < C; ++c) {
      const double mb = static_cast<double>(rs[r * C + c]) / w, delta = mb - mean[c];
      mean[c] += delta * w / n;
      var[c] += static_cast<double>(m2[r * C + c]) + delta * delta * n_a * w / n;
    }
  }
  const double P = static_cast<double>(s.pixels());
  for (int64_t c = 0; c < C; ++c) var[c] /= P;
}

void bn_apply(const float* x, float* y, const BnShape& s, std::span<const float> mean, std::span<const float> scale,
              std::span<const float> shift, BnAct act, const BnDropout* drop, uint16_t* y_bf16) {
  const int64_t R = s.rows, W = s.width, C = s.channels;
#pragma omp parallel for schedule(static) if (parallel(s))
  for (int64_t r = 0; r < R; ++r) {
    const RowDrop rd = row_drop(drop, r, W);
    float* yr = y_bf16 ? row_buffer(W * C) : y + r * W * C;
    row_apply(x + r * W * C, yr, W, C, mean.data(), scale.data(), shift.data(), act.on, act.slope,
              rd.words ? &rd : nullptr);
    if (y_bf16) f32_to_bf16_serial(yr, y_bf16 + r * W * C, W * C);
  }
}

float bn_pre_activation(float x, float m, float a, float b) { return (x - m) * a + b; }

void bn_backward(const float* x, const float* dy, float* dx, const BnShape& s, BnWork& work, const BnForward& f,
                 std::span<const double> invstd, std::span<const float> gamma, BnAct act, float* dscale,
                 float* dshift, uint16_t* dx_bf16) {
  const int64_t R = s.rows, W = s.width, C = s.channels;
  float* sg = work.a();
  float* sgx = work.b();
  const float* mf = f.mean.data();
  const float* fa = f.scale.data();
  const float* fb = f.shift.data();
#pragma omp parallel for schedule(static) if (parallel(s))
  for (int64_t r = 0; r < R; ++r)
  {
    const RowDrop rd = row_drop(f.drop, r, W);
    row_bwd_sums(x + r * W * C, dy + r * W * C, W, C, mf, fa, fb, act.on, act.slope, rd.words ? &rd : nullptr,
                 sg + r * C, sgx + r * C);
  }
  float* k1 = work.k(0);
  float* k2 = work.k(1);
  float* k3 = work.k(2);
  const double P = static_cast<double>(s.pixels());
  for (int64_t c = 0; c < C; ++c) {
    double g = 0.0, gx = 0.0;
    for (int64_t r = 0; r < R; ++r) g += sg[r * C + c], gx += sgx[r * C + c];
    dshift[c] += static_cast<float>(g);
    dscale[c] += static_cast<float>(gx * invstd[c]);
    const double a = static_cast<double>(gamma[c]) * invstd[c];
    k1[c] = static_cast<float>(a);
    k2[c] = static_cast<float>(-a * invstd[c] * invstd[c] * gx / P);
    k3[c] = static_cast<float>(-a * g / P);
  }
  if (!dx && !dx_bf16) return;
#pragma omp parallel for schedule(static) if (parallel(s))
  for (int64_t r = 0; r < R; ++r) {
    const RowDrop rd = row_drop(f.drop, r, W);
    float* dxr = dx_bf16 ? row_buffer(W * C) : dx + r * W * C;
    row_bwd_apply(x + r * W * C, dy + r * W * C, dxr, W, C, mf, fa, fb, k1, k2, k3, act.on, act.slope,
                  rd.words ? &rd : nullptr);
    if (dx_bf16) f32_to_bf16_serial(dxr, dx_bf16 + r * W * C, W * C);
  }
}

}  // namespace crackseg::onednn
