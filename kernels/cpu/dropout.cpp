// Inverted dropout on the CPU backend: OpenMP loops (Debian's Kokkos is Serial-only, so
// threads come from OpenMP here), regions "layers::dropout_mask" / "layers::dropout_apply".
// The mask follows src/layers/dropout_mask.hpp bit for bit; Philox blocks are computed 16
// at a time in structure-of-arrays form so the compiler vectorises the rounds (one block
// gives the words of 4 consecutive logical elements). The mask is stored once per forward,
// in memory order, and reused by backward.
#include <cstring>

#include "kernels/cpu/dnnl_common.hpp"
#include "src/layers/dropout_mask.hpp"

namespace crackseg::onednn {
namespace {

constexpr int kLanes = 16;

// Words of Philox blocks with counters {c0, c1, c2, j0 + b}, b < 16, as philox4x32 computes.
__attribute__((target_clones("avx512f", "avx2", "default"))) void philox16(uint32_t c0, uint32_t c1, uint32_t c2,
                                                                          uint32_t j0, uint32_t k0, uint32_t k1,
                                                                          uint32_t* out /* [16][4] */) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  uint32_t x0[kLanes], x1[kLanes], x2[kLanes], x3[kLanes];
  for (int b = 0; b < kLanes; ++b) x0[b] = c0, x1[b] = c1, x2[b] = c2, x3[b] = j0 + static_cast<uint32_t>(b);
  for (int round = 0; round < 10; ++round) {
    for (int b = 0; b < kLanes; ++b) {
      const uint64_t p0 = static_cast<uint64_t>(M0) * x0[b];
      const uint64_t p1 = static_cast<uint64_t>(M1) * x2[b];
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ x1[b] ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ x3[b] ^ k1;
      x0[b] = n0, x1[b] = static_cast<uint32_t>(p1), x2[b] = n2, x3[b] = static_cast<uint32_t>(p0);
    }
    k0 += W0, k1 += W1;
  }
  for (int b = 0; b < kLanes; ++b) out[4 * b] = x0[b], out[4 * b + 1] = x1[b], out[4 * b + 2] = x2[b], out[4 * b + 3] = x3[b];
}

class Dropout final : public DnnlLayer {
 public:
  Dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c)
      : DnnlLayer(s, n, std::move(c)), salt_(name_salt(n)) {}

  void plan(std::span<const Dims> in) override {
    mask_ = alloc_buffer(in[0], DType::u8, Format::plain);
    ids_.assign(static_cast<std::size_t>(in[0][0]), 0);
  }

  void forward(const StepContext& ctx, std::span<const Tensor* const> in, Tensor& out) override {
    const float p = as<DropoutSpec>().p;
    active_ = ctx.training && p > 0.0f;
    if (!active_) return copy(*in[0], out);
    make_mask(ctx, *in[0]);
    apply(*in[0], out);
  }
  void backward(const StepContext&, std::span<const Tensor* const>, const Tensor&, const Tensor& dout,
                std::span<Tensor* const> din) override {
    if (!din[0]) return;
    if (!active_) return copy(dout, *din[0]);
    apply(dout, *din[0]);  // same mask and scale: the op is linear
  }

 private:
  void make_mask(const StepContext& ctx, const Tensor& x) {
    const int64_t N = x.dim(0), L = x.numel() / N;
    const bool nhwc = x.rank() == 4 && x.format() == Format::nhwc;
    const int64_t C = x.rank() == 4 ? x.c() : 1, HW = x.rank() == 4 ? x.h() * x.w() : L;
    for (int64_t n = 0; n < N; ++n) ids_[static_cast<std::size_t>(n)] = dropout_sample_id(ctx, n);  // may throw
    const float threshold = as<DropoutSpec>().p * 16777216.0f;  // u24 * 2^-24 < p  <=>  u24 < p * 2^24
    const uint64_t key = dropout_key(ctx.seed, salt_);
    const uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    const uint32_t c2 = static_cast<uint32_t>(ctx.epoch);
    const int64_t chunks = (L + 4 * kLanes - 1) / (4 * kLanes);
    uint8_t* m = mask_.data<uint8_t>();
    // layers::dropout_mask
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t ch = 0; ch < chunks; ++ch) {
        const uint64_t s = ids_[static_cast<std::size_t>(n)];
        uint32_t words[4 * kLanes];
        philox16(static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32) ^ (static_cast<uint32_t>(Purpose::dropout) << 24),
                 c2, static_cast<uint32_t>(ch * kLanes), k0, k1, words);
        const int64_t i0 = ch * 4 * kLanes, i1 = std::min(L, i0 + 4 * kLanes);
        for (int64_t i = i0; i < i1; ++i) {
          const bool drop = static_cast<float>(words[i - i0] >> 8) < threshold;
          const int64_t off = nhwc ? (i % HW) * C + i / HW : i;
          m[n * L + off] = drop ? 0 : 1;
        }
      }
  }
  void apply(const Tensor& src, Tensor& dst) const {
    const float p = as<DropoutSpec>().p;
    const float scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    const float* x = src.data<float>();
    float* y = dst.data<float>();
    const uint8_t* m = mask_.data<uint8_t>();
    const int64_t n = src.numel();
    // layers::dropout_apply
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = m[i] ? x[i] * scale : 0.0f;
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
  Tensor mask_;
  std::vector<uint64_t> ids_;
};

}  // namespace

std::unique_ptr<Layer> make_dropout(const LayerSpec& s, const std::string& n, std::shared_ptr<Context> c) {
  return std::make_unique<Dropout>(s, n, std::move(c));
}

}  // namespace crackseg::onednn
