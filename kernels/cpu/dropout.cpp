// Inverted dropout on the CPU backend: OpenMP loops (Debian's Kokkos is Serial-only, so
// threads come from OpenMP here), regions "layers::dropout_forward" / "layers::dropout_apply".
// The mask follows src/layers/dropout_mask.hpp bit for bit; Philox blocks are computed 16
// at a time in structure-of-arrays form so the compiler vectorises the rounds (one block
// gives the words of 4 consecutive logical elements). Forward writes the mask (one 64-bit row
// per channel and tile, as Philox gives it) and the output in one tiled pass; backward
// reuses the mask.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/dnnl_common.hpp"
#include "src/layers/dropout_mask.hpp"

namespace crackseg::onednn {
namespace {

constexpr int kLanes = 16;

// Keep bits of 16 Philox blocks with counters {c0, c1, c2, j0 + b}, b < 16, computed as
// philox4x32 does: bit 4b + k is 1 when word k of block b keeps its element, i.e. when
// (word >> 8) >= ti with ti = ceil(p * 2^24) (the same test as rng_uniform(...) < p, exactly).
uint64_t keep_bits_scalar(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t j0, uint32_t k0, uint32_t k1, uint32_t ti) {
  uint64_t bits = 0;
  for (int b = 0; b < kLanes; ++b) {
    const auto r = philox4x32({c0, c1, c2, j0 + static_cast<uint32_t>(b)}, {k0, k1});
    for (int k = 0; k < 4; ++k)
      if ((r[static_cast<std::size_t>(k)] >> 8) >= ti) bits |= uint64_t{1} << (4 * b + k);
  }
  return bits;
}

// GCC 12's AVX-512 intrinsic headers trip -Wuninitialized (their _mm512_undefined_*
// placeholders); the warning is about the headers, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// hi and lo 32 bits of the 16 products a * m (AVX-512: even and odd lanes separately).
__attribute__((target("avx512f"))) inline void mul_hi_lo(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __mmask16 odd = 0xAAAA;
  const __m512i pe = _mm512_mul_epu32(a, m);                         // even lanes, 64-bit
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // odd lanes, 64-bit
  hi = _mm512_mask_blend_epi32(odd, _mm512_srli_epi64(pe, 32), po);
  lo = _mm512_mask_blend_epi32(odd, pe, _mm512_slli_epi64(po, 32));
}

// The same 16 blocks in AVX-512 lanes; the comparisons give one 16-bit mask per word
// position, interleaved into bit 4b + k with pdep.
__attribute__((target("avx512f,bmi2"))) uint64_t keep_bits_avx512(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t j0,
                                                                   uint32_t k0, uint32_t k1, uint32_t ti) {
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(0xD2511F53u)), m1 = _mm512_set1_epi32(static_cast<int>(0xCD9E8D57u));
  __m512i x0 = _mm512_set1_epi32(static_cast<int>(c0)), x1 = _mm512_set1_epi32(static_cast<int>(c1));
  __m512i x2 = _mm512_set1_epi32(static_cast<int>(c2));
  __m512i x3 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(j0)),
                                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  for (int round = 0; round < 10; ++round) {
    __m512i h0, l0, h1, l1;
    mul_hi_lo(x0, m0, h0, l0);
    mul_hi_lo(x2, m1, h1, l1);
    const __m512i kk0 = _mm512_set1_epi32(static_cast<int>(k0)), kk1 = _mm512_set1_epi32(static_cast<int>(k1));
    x0 = _mm512_xor_si512(_mm512_xor_si512(h1, x1), kk0);
    x1 = l1;
    x2 = _mm512_xor_si512(_mm512_xor_si512(h0, x3), kk1);
    x3 = l0;
    k0 += 0x9E3779B9u, k1 += 0xBB67AE85u;
  }
  const __m512i t = _mm512_set1_epi32(static_cast<int>(ti));
  auto keep = [&](__m512i w) __attribute__((target("avx512f"))) {
    return static_cast<uint64_t>(_mm512_cmpge_epu32_mask(_mm512_srli_epi32(w, 8), t));
  };
  constexpr uint64_t lane = 0x1111111111111111ull;
  return _pdep_u64(keep(x0), lane) | _pdep_u64(keep(x1), lane << 1) | _pdep_u64(keep(x2), lane << 2) |
         _pdep_u64(keep(x3), lane << 3);
}

#pragma GCC diagnostic pop

using KeepBits = uint64_t (*)(uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t, uint32_t);
KeepBits pick_keep_bits() {
  return avx512_enabled() && __builtin_cpu_supports("bmi2") ? keep_bits_avx512 : keep_bits_scalar;
}

// The mask, one bit per element (memory: 1/32 of the activation instead of 1/4 as bytes).
// Elements are grouped in tiles of kTile pixels x all channels (contiguous in nhwc memory,
// below). A tile's mask is one 64-bit word per channel ("row"), bit k = pixel k of the tile:
// exactly the keep bits Philox gives for that channel's run of logical indices, so forward
// stores them as they come (no per-element transpose), and the apply reads, per pixel, bit k
// of every channel's row. Threads never share a word (a tile is one thread's).
// Apply y[k*C + c] = bit k of rows[c] ? x[k*C + c] * scale : 0 over one tile of npix pixels;
// shared by forward and backward so the two directions use the same mask the same way.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) void apply_rows_avx512(const uint64_t* rows, const float* x, float* y, int64_t npix,
                                                          int64_t C, float scale) {
  const __m512 s = _mm512_set1_ps(scale);
  if (C == 1) {  // one row: 16 pixels per mask register
    const uint64_t r = rows[0];
    int64_t k = 0;
    for (; k + 16 <= npix; k += 16)
      _mm512_storeu_ps(y + k, _mm512_maskz_mul_ps(static_cast<__mmask16>(r >> k), _mm512_loadu_ps(x + k), s));
    if (k < npix) {
      const auto tail = static_cast<__mmask16>((1u << (npix - k)) - 1u);
      const auto m = static_cast<__mmask16>(r >> k) & tail;
      _mm512_mask_storeu_ps(y + k, tail, _mm512_maskz_mul_ps(m, _mm512_maskz_loadu_ps(tail, x + k), s));
    }
    return;
  }
  const __m512i one = _mm512_set1_epi64(1);
  for (int64_t k = 0; k < npix; ++k) {
    const __m128i shift = _mm_cvtsi64_si128(k);
    const float* xp = x + k * C;
    float* yp = y + k * C;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {  // two groups of 8 rows -> one 16-bit mask
      const __mmask8 lo = _mm512_test_epi64_mask(_mm512_srl_epi64(_mm512_loadu_si512(rows + c), shift), one);
      const __mmask8 hi = _mm512_test_epi64_mask(_mm512_srl_epi64(_mm512_loadu_si512(rows + c + 8), shift), one);
      const auto m = static_cast<__mmask16>(lo | (static_cast<unsigned>(hi) << 8));
      _mm512_storeu_ps(yp + c, _mm512_maskz_mul_ps(m, _mm512_loadu_ps(xp + c), s));
    }
    for (; c < C; c += 8) {  // up to 8 channels left
      const auto tail = static_cast<__mmask8>((1u << std::min<int64_t>(8, C - c)) - 1u);
      const __mmask8 m =
          _mm512_test_epi64_mask(_mm512_srl_epi64(_mm512_maskz_loadu_epi64(tail, rows + c), shift), one) & tail;
      _mm512_mask_storeu_ps(yp + c, tail, _mm512_maskz_mul_ps(m, _mm512_maskz_loadu_ps(tail, xp + c), s));
    }
  }
}
#pragma GCC diagnostic pop
void apply_rows_scalar(const uint64_t* rows, const float* x, float* y, int64_t npix, int64_t C, float scale) {
  for (int64_t k = 0; k < npix; ++k)
    for (int64_t c = 0; c < C; ++c) y[k * C + c] = (rows[c] >> k) & 1u ? x[k * C + c] * scale : 0.0f;
}
using ApplyRows = void (*)(const uint64_t*, const float*, float*, int64_t, int64_t, float);

class Dropout final : public DnnlLayer {
 public:
  Dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c)
      : DnnlLayer(s, n, std::move(c)), salt_(name_salt(n)) {}

  // In place (memory, Graph plan): forward is elementwise (y = m ? x * scale : 0, read
  // before written), backward reads only the mask, and a kept element keeps its sign
  // (scale > 0) while a dropped one gets gradient exactly 0.
  bool runs_in_place() const override { return true; }
  bool backward_reads_output() const override { return false; }
  bool keeps_sign_where_grad_flows() const override { return true; }

  void plan(std::span<const Dims> in) override {
    const Dims& d = in[0];
    N_ = d[0];
    L_ = numel(d) / N_;
    C_ = d.size() == 4 ? d[1] : 1;  // nhwc (the backend's 4-D layout): a tile is kTile pixels x C channels
    HW_ = L_ / C_;
    tiles_ = (HW_ + kTile - 1) / kTile;
    mask_ = alloc_buffer({N_ * tiles_ * C_ * 8}, DType::u8, Format::plain);
    ids_.assign(static_cast<std::size_t>(N_), 0);
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const float p = as<DropoutSpec>().p;
    active_ = ctx.training && p > 0.0f;
    if (!active_) return copy(*in[0], out);
    forward_masked(ctx, *in[0], out);
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    if (!active_) return copy(dout, *din[0]);
    apply(dout, *din[0]);  // same mask and scale: the op is linear
  }

 private:
  // Forward: mask generation and application fused per tile, so every write is local.
  // nhwc: a tile is kTile pixels x all C channels (contiguous in memory); for each channel
  // the tile's logical indices c*HW + p0 .. + kTile-1 come from 16 consecutive Philox
  // blocks (kTile + 3 <= 64 words, whatever the alignment). Other layouts: logical = memory.
  static constexpr int64_t kTile = 60;
  [[nodiscard]] float scale() const {
    const float p = as<DropoutSpec>().p;
    return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
  }
  void forward_masked(const StepContext& ctx, const Tensor& x, Tensor& y) {
    if (C_ > 1 && x.format() != Format::nhwc)
      throw Error("dropout '" + name_ + "': expects nhwc activations (the oneDNN backend's layout), got " +
                  to_string(x.dims()) + " in another format");
    const int64_t N = N_, L = L_, C = C_, HW = HW_, tiles = tiles_;
    for (int64_t n = 0; n < N; ++n) ids_[static_cast<std::size_t>(n)] = dropout_sample_id(ctx, n);  // may throw
    const float p = as<DropoutSpec>().p;
    // u24 * 2^-24 < p  <=>  u24 < ceil(p * 2^24) (exact in double)
    const auto ti = static_cast<uint32_t>(std::ceil(static_cast<double>(p) * 16777216.0));
    const float sc = scale();
    const uint64_t key = dropout_key(ctx.seed, salt_);
    const uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    const uint32_t c2 = static_cast<uint32_t>(ctx.epoch);
    static const KeepBits keep_bits = pick_keep_bits();
    static const ApplyRows apply_rows = avx512_enabled() ? apply_rows_avx512 : apply_rows_scalar;
    uint64_t* words = static_cast<uint64_t*>(mask_.raw());
    const float* xs = x.data<float>();
    float* ys = y.data<float>();
    // layers::dropout_forward
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t t = 0; t < tiles; ++t) {
        const uint64_t s = ids_[static_cast<std::size_t>(n)];
        const uint32_t c0 = static_cast<uint32_t>(s);
        const uint32_t c1 = static_cast<uint32_t>(s >> 32) ^ (static_cast<uint32_t>(Purpose::dropout) << 24);
        const int64_t p0 = t * kTile, npix = std::min(HW, p0 + kTile) - p0;
        uint64_t* rows = words + (n * tiles + t) * C;
        const uint64_t used = (uint64_t{1} << npix) - 1u;  // npix <= kTile < 64
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i0 = c * HW + p0;
          // bit j <-> logical element 4 * (i0 / 4) + j; the tile starts at bit i0 % 4
          rows[c] = (keep_bits(c0, c1, c2, static_cast<uint32_t>(i0 / 4), k0, k1, ti) >> (i0 % 4)) & used;
        }
        const int64_t b0 = n * L + p0 * C;
        apply_rows(rows, xs + b0, ys + b0, npix, C, sc);
      }
  }
  void apply(const Tensor& src, Tensor& dst) const {
    static const ApplyRows apply_rows = avx512_enabled() ? apply_rows_avx512 : apply_rows_scalar;
    const float sc = scale();
    const float* x = src.data<float>();
    float* y = dst.data<float>();
    const auto* words = static_cast<const uint64_t*>(mask_.raw());
    const int64_t N = N_, L = L_, C = C_, HW = HW_, tiles = tiles_;
    // layers::dropout_apply
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t p0 = t * kTile, npix = std::min(HW, p0 + kTile) - p0;
        const int64_t b0 = n * L + p0 * C;
        apply_rows(words + (n * tiles + t) * C, x + b0, y + b0, npix, C, sc);
      }
  }
  static void copy(const Tensor& src, Tensor& dst) {
    if (src.raw() == dst.raw()) return;
    const int64_t bytes = static_cast<int64_t>(src.nbytes()), chunk = 1 << 16;
    const auto* s = static_cast<const std::byte*>(src.raw());
    auto* d = static_cast<std::byte*>(dst.raw());
#pragma omp parallel for schedule(static)
    for (int64_t off = 0; off < bytes; off += chunk)
      std::memcpy(d + off, s + off, static_cast<std::size_t>(std::min(chunk, bytes - off)));
  }

  uint32_t salt_;
  bool active_ = false;
  int64_t N_ = 0, L_ = 0, C_ = 1, HW_ = 0, tiles_ = 0;
  Tensor mask_;  // N * tiles * C 64-bit words: per tile, one row of kTile bits per channel
  std::vector<uint64_t> ids_;
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Dropout>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
