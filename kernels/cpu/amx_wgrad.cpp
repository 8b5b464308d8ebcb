// bf16 convolution weight gradient on AMX tiles (see amx_wgrad.hpp).
#include "kernels/cpu/amx_wgrad.hpp"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/cpu/simd_switches.hpp"
#include "src/core/error.hpp"

namespace crackseg::onednn {
namespace {

constexpr int64_t kChunkBytes = 384 * 1024;  // xT + dyV of one chunk: stays in L2
constexpr int64_t kPix = 32;                 // pixels (bf16 values) per tile row of A

// Chunk geometry, a function of the shape only.
struct Geometry {
  int64_t wop = 0;    // Wo padded to a multiple of kPix
  int64_t wc = 0;     // xT columns per phase: wop + (Kw - 1) / S
  int64_t R = 0;      // output rows per chunk
  int64_t rin = 0;    // xT rows: (R - 1) * S + Kh
  int64_t per_image = 0, chunks = 0;
  int64_t ip = 0, op = 0;  // I and O rounded up to 16 (the padding channels are zeros)
  int64_t ib = 0;     // input-channel blocks of 16
  int64_t slots = 0;  // Kh * Kw * ib: one A operand (tap, input block) each
  std::size_t xt_bytes = 0, dyv_bytes = 0, part_bytes = 0, bias_bytes = 0, per_thread = 0;
};

std::size_t align64(std::size_t b) { return (b + 63) / 64 * 64; }

Geometry geometry(const AmxWgradShape& s) {
  Geometry g;
  g.wop = (s.Wo + kPix - 1) / kPix * kPix;
  g.wc = g.wop + (s.Kw - 1) / s.S;
  g.ip = (s.I + 15) / 16 * 16;
  g.op = (s.O + 15) / 16 * 16;
  const int64_t per_row = (s.S * s.S * g.ip * g.wc + g.wop * g.op) * 2;
  g.R = std::clamp<int64_t>(kChunkBytes / std::max<int64_t>(per_row, 1), 1, s.Ho);
  g.per_image = (s.Ho + g.R - 1) / g.R;
  g.chunks = s.N * g.per_image;
  g.rin = (g.R - 1) * s.S + s.Kh;
  g.ib = g.ip / 16;
  g.slots = s.Kh * s.Kw * g.ib;
  g.xt_bytes = align64(static_cast<std::size_t>(s.S * g.ip * g.rin * g.wc) * 2);
  g.dyv_bytes = align64(static_cast<std::size_t>(g.R * g.wop * g.op) * 2);
  g.part_bytes = align64(static_cast<std::size_t>(g.slots * 16 * g.op) * sizeof(float));
  g.bias_bytes = align64(static_cast<std::size_t>(g.op) * sizeof(float));
  g.per_thread = g.xt_bytes + g.dyv_bytes + g.part_bytes + g.bias_bytes;
  return g;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// Within each dword c of the result: (a[c], b[c]) for a = the low 16 words of z, b = the high:
// two pixels' 16 channels interleaved per channel.
__attribute__((target("avx512f,avx512bw"))) inline __m512i pair_words(__m512i z) {
  const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                       5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(idx, z);
}

// The words of mask m at p (others zero), or zeros for a null p.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m256i load16(const uint16_t* p, __mmask16 m) {
  return p ? _mm256_maskz_loadu_epi16(m, p) : _mm256_setzero_si256();
}
// The first n (<= 16) lanes.
inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}
// bf16 words -> fp32.
__attribute__((target("avx512f,avx512bw"))) inline __m512 widen(__m256i v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

// 16 channels of 32 pixels (pixel k at px[k], the channels of mask cm; others and null pixels
// zero) transposed into 16 rows of 32 words: d + i*ld, the first `n` words of each written. Pixel pairs
// interleaved per channel (pair_words), then the 16x16 dword transpose (unpack 32, unpack 64,
// two 128-bit lane shuffles).
__attribute__((target("avx512f,avx512bw,avx512vl"))) void transpose_16x32(const uint16_t* const* px, __mmask16 cm,
                                                                          uint16_t* d, int64_t ld, int64_t n) {
  __m512i r[16];
  for (int k = 0; k < 16; ++k)
    r[k] = pair_words(_mm512_inserti64x4(_mm512_castsi256_si512(load16(px[2 * k], cm)), load16(px[2 * k + 1], cm), 1));
  __m512i a[16], b[16];
  for (int m = 0; m < 8; ++m) {
    a[2 * m] = _mm512_unpacklo_epi32(r[2 * m], r[2 * m + 1]);
    a[2 * m + 1] = _mm512_unpackhi_epi32(r[2 * m], r[2 * m + 1]);
  }
  // b[4q + e], lane L: column 4L + e of rows 4q .. 4q+3.
  for (int q = 0; q < 4; ++q) {
    b[4 * q + 0] = _mm512_unpacklo_epi64(a[4 * q], a[4 * q + 2]);
    b[4 * q + 1] = _mm512_unpackhi_epi64(a[4 * q], a[4 * q + 2]);
    b[4 * q + 2] = _mm512_unpacklo_epi64(a[4 * q + 1], a[4 * q + 3]);
    b[4 * q + 3] = _mm512_unpackhi_epi64(a[4 * q + 1], a[4 * q + 3]);
  }
  const __mmask32 m = n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << n) - 1);
  for (int e = 0; e < 4; ++e) {  // column 4L + e: lane q of it = lane L of b[4q + e]
    const __m512i c0 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0x44), c1 = _mm512_shuffle_i32x4(b[e], b[4 + e], 0xEE);
    const __m512i c2 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0x44);
    const __m512i c3 = _mm512_shuffle_i32x4(b[8 + e], b[12 + e], 0xEE);
    _mm512_mask_storeu_epi16(d + (0 + e) * ld, m, _mm512_shuffle_i32x4(c0, c2, 0x88));
    _mm512_mask_storeu_epi16(d + (4 + e) * ld, m, _mm512_shuffle_i32x4(c0, c2, 0xDD));
    _mm512_mask_storeu_epi16(d + (8 + e) * ld, m, _mm512_shuffle_i32x4(c1, c3, 0x88));
    _mm512_mask_storeu_epi16(d + (12 + e) * ld, m, _mm512_shuffle_i32x4(c1, c3, 0xDD));
  }
}

// xT[p][i][rr][c] = x[n, S*r0 - Ph + rr, S*c + p - Pw, i] (zero outside the image) for the
// chunk's input rows rr < rows: the transposed input, one plane per column phase p, so that
// the A operand of tap (kh, kw) at output (r0 + j, ow) is xT[kw % S][i][S*j + kh][ow + kw / S].
void build_xt(const AmxWgradShape& s, const Geometry& g, const uint16_t* x, int64_t n, int64_t r0, int64_t rows,
              uint16_t* xt) {
  const int64_t I = s.I, Ip = g.ip, plane = g.rin * g.wc;
  for (int64_t p = 0; p < s.S; ++p)
    for (int64_t rr = 0; rr < rows; ++rr) {
      const int64_t ih = s.S * r0 - s.Ph + rr;
      uint16_t* d = xt + p * Ip * plane + rr * g.wc;
      if (ih < 0 || ih >= s.H) {
        for (int64_t i = 0; i < Ip; ++i) std::memset(d + i * plane, 0, g.wc * sizeof(uint16_t));
        continue;
      }
      // Columns c with 0 <= S*c + p - Pw < W: [lo, hi).
      const int64_t lo = std::min(g.wc, std::max<int64_t>(0, (s.Pw - p + s.S - 1) / s.S));
      const int64_t last = s.W - 1 + s.Pw - p;  // S*c <= last
      const int64_t hi = last < 0 ? lo : std::clamp<int64_t>(last / s.S + 1, lo, g.wc);
      const uint16_t* src = x + ((n * s.H + ih) * s.W) * I;
      // [0, lo) zero; [lo, wc) in blocks of 32 columns, pixels past hi as zeros (the padding).
      for (int64_t i = 0; i < Ip; ++i) std::fill(d + i * plane, d + i * plane + lo, uint16_t{0});
      for (int64_t c = lo; c < g.wc; c += 32) {
        const int64_t nc = std::min<int64_t>(32, g.wc - c);
        for (int64_t i0 = 0; i0 < Ip; i0 += 16) {  // channels past I: zero rows
          const uint16_t* px[32];
          for (int64_t k = 0; k < 32; ++k) px[k] = c + k < hi ? src + (s.S * (c + k) + p - s.Pw) * I + i0 : nullptr;
          transpose_16x32(px, first_lanes(I - i0), d + i0 * plane + c, plane, nc);
        }
      }
    }
}

// dyV[j][q][o][2] = (dy[n, r0 + j, 2q, o], dy[n, r0 + j, 2q + 1, o]) (zero past Wo and for
// o >= O up to the padded op): pairs of neighbouring pixels interleaved per channel, the B
// operand; bias[o] += the chunk's dy, pixel by pixel in order.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void build_dyv(const AmxWgradShape& s, const Geometry& g,
                                                            const uint16_t* dy, int64_t n, int64_t r0, int64_t rows,
                                                            uint16_t* dyv, float* bias) {
  const int64_t O = s.O, Op = g.op;
  for (int64_t j = 0; j < rows; ++j) {
    const uint16_t* src = dy + ((n * s.Ho + r0 + j) * s.Wo) * O;
    uint16_t* d = dyv + j * g.wop * Op;
    for (int64_t q = 0; q < g.wop / 2; ++q) {
      const uint16_t* a = 2 * q < s.Wo ? src + 2 * q * O : nullptr;
      const uint16_t* b = 2 * q + 1 < s.Wo ? src + (2 * q + 1) * O : nullptr;
      for (int64_t o = 0; o < Op; o += 16) {
        const __mmask16 m = first_lanes(O - o);
        const __m256i va = load16(a ? a + o : nullptr, m), vb = load16(b ? b + o : nullptr, m);
        _mm512_storeu_si512(d + q * 2 * Op + 2 * o, pair_words(_mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1)));
        if (bias) {
          __m512 acc = _mm512_loadu_ps(bias + o);
          if (a) acc = _mm512_add_ps(acc, widen(va));
          if (b) acc = _mm512_add_ps(acc, widen(vb));
          _mm512_storeu_ps(bias + o, acc);
        }
      }
    }
  }
}

#pragma GCC diagnostic pop

// One tile job: NS A operands (taps / input blocks) x NB output blocks of 16, accumulators in
// tiles 0-3 (tile s*NB + b), A in tiles 4-5, B in 6-7; over `rows` output rows of kPix-pixel
// steps. Pointers are at (j, ow) = (0, 0); a row adds a_row / b_row elements, a step kPix /
// kPix*O.
struct Job {
  const uint16_t* a[4];
  const uint16_t* b[2];
  float* c[4];
  int64_t a_stride, b_stride, c_stride;  // bytes
  int64_t rows, a_row, b_row, steps, b_step;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
template <int NS, int NB>
__attribute__((target("amx-tile,amx-bf16"))) void run_job(const Job& jb) {
  constexpr int NC = NS * NB;
  _tile_loadd(0, jb.c[0], jb.c_stride);
  if constexpr (NC > 1) _tile_loadd(1, jb.c[1], jb.c_stride);
  if constexpr (NC > 2) _tile_loadd(2, jb.c[2], jb.c_stride);
  if constexpr (NC > 3) _tile_loadd(3, jb.c[3], jb.c_stride);
  for (int64_t j = 0; j < jb.rows; ++j)
    for (int64_t t = 0; t < jb.steps; ++t) {
      const int64_t oa = j * jb.a_row + t * kPix, ob = j * jb.b_row + t * jb.b_step;
      _tile_loadd(6, jb.b[0] + ob, jb.b_stride);
      if constexpr (NB == 2) _tile_loadd(7, jb.b[1] + ob, jb.b_stride);
      _tile_loadd(4, jb.a[0] + oa, jb.a_stride);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (NB == 2) _tile_dpbf16ps(1, 4, 7);
      if constexpr (NS > 1) {
        _tile_loadd(5, jb.a[1] + oa, jb.a_stride);
        if constexpr (NB == 2) {
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        } else {
          _tile_dpbf16ps(1, 5, 6);
        }
      }
      if constexpr (NS > 2) {
        _tile_loadd(4, jb.a[2] + oa, jb.a_stride);
        _tile_dpbf16ps(2, 4, 6);
      }
      if constexpr (NS > 3) {
        _tile_loadd(5, jb.a[3] + oa, jb.a_stride);
        _tile_dpbf16ps(3, 5, 6);
      }
    }
  _tile_stored(0, jb.c[0], jb.c_stride);
  if constexpr (NC > 1) _tile_stored(1, jb.c[1], jb.c_stride);
  if constexpr (NC > 2) _tile_stored(2, jb.c[2], jb.c_stride);
  if constexpr (NC > 3) _tile_stored(3, jb.c[3], jb.c_stride);
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

__attribute__((target("amx-tile"))) void tiles_on() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  asm volatile("" ::: "memory");  // the whole config is written before ldtilecfg reads it
  _tile_loadconfig(&cfg);
}
__attribute__((target("amx-tile"))) void tiles_off() { _tile_release(); }
#pragma GCC diagnostic pop

// All tile jobs of one chunk (rows output rows; xT and dyV built).
void chunk_jobs(const AmxWgradShape& s, const Geometry& g, const uint16_t* xt, const uint16_t* dyv, int64_t rows,
                float* part) {
  const int64_t O = g.op, ob = O / 16, plane = g.rin * g.wc;
  Job jb{};
  jb.a_stride = plane * 2;
  jb.b_stride = O * 4;
  jb.c_stride = O * 4;
  jb.rows = rows;
  jb.a_row = s.S * g.wc;
  jb.b_row = g.wop * O;
  jb.steps = g.wop / kPix;
  jb.b_step = kPix * O;
  const auto a_of = [&](int64_t slot) {
    const int64_t tap = slot / g.ib, blk = slot % g.ib, kh = tap / s.Kw, kw = tap % s.Kw;
    return xt + ((kw % s.S) * g.ip + blk * 16) * plane + kh * g.wc + kw / s.S;
  };
  const auto c_of = [&](int64_t slot, int64_t b) { return part + slot * 16 * O + b * 16; };
  asm volatile("" ::: "memory");  // xT and dyV are in memory before the tile loads read them
  for (int64_t b = 0; b < ob; b += 2) {
    const bool pair = b + 1 < ob;
    jb.b[0] = dyv + b * 32;
    jb.b[1] = dyv + (b + 1) * 32;
    const int64_t per = pair ? 2 : 4;
    for (int64_t s0 = 0; s0 < g.slots; s0 += per) {
      const int64_t ns = std::min(per, g.slots - s0);
      for (int64_t k = 0; k < ns; ++k) {
        jb.a[k] = a_of(s0 + k);
        if (pair)
          jb.c[2 * k] = c_of(s0 + k, b), jb.c[2 * k + 1] = c_of(s0 + k, b + 1);
        else
          jb.c[k] = c_of(s0 + k, b);
      }
      if (pair) {
        if (ns == 2)
          run_job<2, 2>(jb);
        else
          run_job<1, 2>(jb);
      } else {
        switch (ns) {
          case 4: run_job<4, 1>(jb); break;
          case 3: run_job<3, 1>(jb); break;
          case 2: run_job<2, 1>(jb); break;
          default: run_job<1, 1>(jb); break;
        }
      }
    }
  }
}

}  // namespace

bool amx_bf16_available() {
  static const bool granted = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & (1u << 22)) || !(d & (1u << 24))) return false;  // AMX-BF16, AMX-TILE
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return granted && !simd_switched_off("CRACKSEG_NO_AMX") && avx512_enabled();
}

bool amx_wgrad_fits(const AmxWgradShape& s) {
  return s.I > 0 && s.O > 0 && (s.S == 1 || s.S == 2) && s.Kh >= 1 && s.Kw >= 1 &&
         s.Kh <= 7 && s.Kw <= 7 && s.Ph >= 0 && s.Pw >= 0 && s.Ph < s.Kh && s.Pw < s.Kw && s.Ho > 0 && s.Wo > 0 &&
         amx_bf16_available();
}

int64_t amx_wgrad_chunk_rows(const AmxWgradShape& s) { return geometry(s).R; }

std::size_t amx_wgrad_scratch_bytes(const AmxWgradShape& s, int threads) {
  return geometry(s).per_thread * static_cast<std::size_t>(std::max(threads, 1)) + 64;
}

void amx_wgrad(const AmxWgradShape& s, const uint16_t* x, const uint16_t* dy, void* scratch, float* dW, float* db,
               int threads) {
  if (!amx_wgrad_fits(s))
    throw Error("amx_wgrad: x (N, H, W, I) = (" + std::to_string(s.N) + ", " + std::to_string(s.H) + ", " +
                std::to_string(s.W) + ", " + std::to_string(s.I) + "), dy (Ho, Wo, O) = (" + std::to_string(s.Ho) +
                ", " + std::to_string(s.Wo) + ", " + std::to_string(s.O) + "), kernel " + std::to_string(s.Kh) + "x" +
                std::to_string(s.Kw) + " stride " + std::to_string(s.S) + " padding " + std::to_string(s.Ph) + "/" +
                std::to_string(s.Pw) + ": not a shape this kernel takes, or no AMX-BF16 here (amx_wgrad_fits)");
  const Geometry g = geometry(s);
  auto* base = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(scratch) + 63) / 64 * 64);
  const int64_t part_floats = g.slots * 16 * g.op;
  int used = 1;
#pragma omp parallel num_threads(std::max(threads, 1))
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
#pragma omp single
    used = nt;
    std::byte* mine = base + g.per_thread * t;
    auto* xt = reinterpret_cast<uint16_t*>(mine);
    auto* dyv = reinterpret_cast<uint16_t*>(mine + g.xt_bytes);
    auto* part = reinterpret_cast<float*>(mine + g.xt_bytes + g.dyv_bytes);
    auto* bias = reinterpret_cast<float*>(mine + g.xt_bytes + g.dyv_bytes + g.part_bytes);
    std::fill(part, part + part_floats, 0.0f);
    std::fill(bias, bias + g.op, 0.0f);
    const int64_t c0 = g.chunks * t / nt, c1 = g.chunks * (t + 1) / nt;
    if (c1 > c0) tiles_on();
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t n = c / g.per_image, r0 = (c % g.per_image) * g.R, rows = std::min(g.R, s.Ho - r0);
      build_xt(s, g, x, n, r0, (rows - 1) * s.S + s.Kh, xt);
      build_dyv(s, g, dy, n, r0, rows, dyv, db ? bias : nullptr);
      chunk_jobs(s, g, xt, dyv, rows, part);
    }
    if (c1 > c0) tiles_off();
  }
  // dW[o][i][kh][kw] += sum over threads (in order) of part[(tap * ib + i / 16) * 16 + i % 16][o].
  const int64_t taps = s.Kh * s.Kw, I = s.I, O = s.O;
#pragma omp parallel for num_threads(std::max(threads, 1)) schedule(static)
  for (int64_t o = 0; o < O; ++o) {
    for (int64_t i = 0; i < I; ++i)
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int64_t at = ((tap * g.ib + i / 16) * 16 + i % 16) * g.op + o;
        float v = 0.0f;
        for (int u = 0; u < used; ++u)
          v += reinterpret_cast<const float*>(base + g.per_thread * u + g.xt_bytes + g.dyv_bytes)[at];
        dW[(o * I + i) * taps + tap] += v;
      }
    if (db) {
      float v = 0.0f;
      for (int u = 0; u < used; ++u)
        v += reinterpret_cast<const float*>(base + g.per_thread * u + g.xt_bytes + g.dyv_bytes + g.part_bytes)[o];
      db[o] += v;
    }
  }
}

}  // namespace crackseg::onednn
