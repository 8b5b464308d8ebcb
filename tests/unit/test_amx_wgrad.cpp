// ctest-link: crackseg_nn
// bf16 convolution weight gradient on AMX tiles (kernels/cpu/amx_wgrad.hpp). Skips on CPUs
// without AMX-BF16 (the layer then keeps oneDNN's kernel).
//
// Integer-valued bf16 operands make every product and sum exact in fp32, so the kernel must
// give the definition's value exactly: a lost, doubled or misplaced pixel, tap, row, chunk or
// channel block fails it whatever its size. Shapes cover every tile job (2x2, 1x2, 4/3/2/1x1),
// strides 1 and 2, kernels 1 to 7 with padding that drops taps, rectangular kernels (the
// transposed convolutions' phases), widths that are not a multiple of 32, and several chunks
// per image (checked to happen). dW and db are added into; db may be null. 1, 2 and 3 threads.
// Random real-valued operands are checked against a double sum within the fp32 accumulation
// bound. Every buffer ends at an inaccessible page (CRACKSEG_GUARD_PAGES=1): a tile load or
// store past an end faults.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/amx_wgrad.hpp"
#include "src/core/error.hpp"
#include "src/tensor/tensor.hpp"

using namespace crackseg;
using namespace crackseg::onednn;

namespace {

uint16_t to_bf16(float f) {  // the values used here are exact in bf16, or rounded to nearest even
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
double from_bf16(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

AmxWgradShape rect(int64_t N, int64_t I, int64_t H, int64_t W, int64_t O, int64_t Kh, int64_t Kw, int64_t S,
                   int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  return {N, I, H, W, O, (H + pt + pb - Kh) / S + 1, (W + pl + pr - Kw) / S + 1, Kh, Kw, S, pt, pl};
}
AmxWgradShape square(int64_t N, int64_t I, int64_t H, int64_t W, int64_t O, int64_t K, int64_t S, int64_t P) {
  return rect(N, I, H, W, O, K, K, S, P, P, P, P);
}

struct Operands {
  Tensor x, dy, dW, db;
};

class AmxWgrad : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!amx_bf16_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU";
    ::setenv("CRACKSEG_GUARD_PAGES", "1", 1);
  }
  void TearDown() override { ::unsetenv("CRACKSEG_GUARD_PAGES"); }

  // Operands: integers in [-3, 3] (exact) or normal reals (rounded to bf16).
  static Operands make(const AmxWgradShape& s, bool integers, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> iv(-3, 3);
    std::normal_distribution<float> rv(0.0f, 1.0f);
    Operands r;
    r.x = Tensor::empty({s.N * s.H * s.W * s.I}, DType::bf16);
    r.dy = Tensor::empty({s.N * s.Ho * s.Wo * s.O}, DType::bf16);
    auto* x = static_cast<uint16_t*>(r.x.raw());
    auto* dy = static_cast<uint16_t*>(r.dy.raw());
    for (int64_t k = 0; k < r.x.numel(); ++k) x[k] = to_bf16(integers ? static_cast<float>(iv(rng)) : rv(rng));
    for (int64_t k = 0; k < r.dy.numel(); ++k) dy[k] = to_bf16(integers ? static_cast<float>(iv(rng)) : rv(rng));
    r.dW = Tensor::empty({s.O * s.I * s.Kh * s.Kw});
    r.db = Tensor::empty({s.O});
    std::fill_n(r.dW.data<float>(), r.dW.numel(), 0.5f);
    std::fill_n(r.db.data<float>(), r.db.numel(), -0.25f);
    return r;
  }

  static void run(const AmxWgradShape& s, Operands& r, int threads, bool bias) {
    Tensor scratch = Tensor::empty({static_cast<int64_t>(amx_wgrad_scratch_bytes(s, threads))}, DType::u8);
    amx_wgrad(s, static_cast<const uint16_t*>(r.x.raw()), static_cast<const uint16_t*>(r.dy.raw()), scratch.raw(),
              r.dW.data<float>(), bias ? r.db.data<float>() : nullptr, threads);
  }

  // The definition in double: value and sum of |terms| per weight (index O, I, Kh, Kw), then the bias.
  static void reference(const AmxWgradShape& s, const Operands& r, std::vector<double>& v, std::vector<double>& mag) {
    const auto* x = static_cast<const uint16_t*>(r.x.raw());
    const auto* dy = static_cast<const uint16_t*>(r.dy.raw());
    const int64_t nw = s.O * s.I * s.Kh * s.Kw;
    v.assign(nw + s.O, 0.0);
    mag.assign(nw + s.O, 0.0);
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t oh = 0; oh < s.Ho; ++oh)
        for (int64_t ow = 0; ow < s.Wo; ++ow)
          for (int64_t o = 0; o < s.O; ++o) {
            const double g = from_bf16(dy[((n * s.Ho + oh) * s.Wo + ow) * s.O + o]);
            v[nw + o] += g, mag[nw + o] += std::abs(g);
            for (int64_t kh = 0; kh < s.Kh; ++kh)
              for (int64_t kw = 0; kw < s.Kw; ++kw) {
                const int64_t ih = s.S * oh + kh - s.Ph, iw = s.S * ow + kw - s.Pw;
                if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
                for (int64_t i = 0; i < s.I; ++i) {
                  const double t = g * from_bf16(x[((n * s.H + ih) * s.W + iw) * s.I + i]);
                  const int64_t at = ((o * s.I + i) * s.Kh + kh) * s.Kw + kw;
                  v[at] += t, mag[at] += std::abs(t);
                }
              }
          }
  }

  static void check_exact(const AmxWgradShape& s, uint32_t seed) {
    Operands r = make(s, true, seed);
    std::vector<double> v, mag;
    reference(s, r, v, mag);
    const int64_t nw = s.O * s.I * s.Kh * s.Kw;
    for (int threads : {1, 2, 3}) {
      SCOPED_TRACE("threads " + std::to_string(threads));
      std::fill_n(r.dW.data<float>(), nw, 0.5f);
      std::fill_n(r.db.data<float>(), s.O, -0.25f);
      run(s, r, threads, true);
      int bad = 0;
      for (int64_t k = 0; k < nw && bad < 5; ++k)
        if (r.dW.data<float>()[k] != static_cast<float>(v[k] + 0.5)) {
          ADD_FAILURE() << "dW[" << k << "] = " << r.dW.data<float>()[k] << ", expected " << v[k] + 0.5;
          ++bad;
        }
      for (int64_t o = 0; o < s.O && bad < 5; ++o)
        if (r.db.data<float>()[o] != static_cast<float>(v[nw + o] - 0.25)) {
          ADD_FAILURE() << "db[" << o << "] = " << r.db.data<float>()[o] << ", expected " << v[nw + o] - 0.25;
          ++bad;
        }
    }
  }
};

TEST_F(AmxWgrad, ExactOnEveryJobShapeStrideAndKernel) {
  struct Case {
    const char* name;
    AmxWgradShape s;
  };
  const Case cases[] = {
      {"16->16 3x3 s1 (4,4,1 x1 jobs)", square(2, 16, 40, 40, 16, 3, 1, 1)},
      {"32->32 3x3 s1, 200 wide (2x2 jobs, several chunks)", square(3, 32, 20, 200, 32, 3, 1, 1)},
      {"16->48 3x3 s2 odd width (2x2 + 1x1 jobs)", square(2, 16, 37, 37, 48, 3, 2, 1)},
      {"64->32 1x1", square(1, 64, 9, 9, 32, 1, 1, 0)},
      {"32->16 2x1 phase (pad top)", rect(2, 32, 12, 70, 16, 2, 1, 1, 1, 1, 0, 0)},
      {"16->32 1x2 phase (pad right)", rect(2, 16, 11, 33, 32, 1, 2, 1, 0, 0, 0, 1)},
      {"32->16 5x5 s2 p2, 65 wide (2x1 jobs)", square(2, 32, 30, 65, 16, 5, 2, 2)},
      {"48->16 7x7 s2 p3", square(1, 48, 23, 29, 16, 7, 2, 3)},
      {"16->64 3x3 s1 p0, 1 pixel wide", square(2, 16, 5, 3, 64, 3, 1, 0)},
      // Channel counts padded to 16 inside the kernel (the tails' loads are masked).
      {"3->16 3x3 s1 (the first layers)", square(2, 3, 21, 40, 16, 3, 1, 1)},
      {"1->16 3x3 s2 (a 1-channel map)", square(2, 1, 17, 19, 16, 3, 2, 0)},
      {"16->1 1x1 (a head)", square(2, 16, 9, 35, 1, 1, 1, 0)},
      {"20->24 3x3 s1", square(1, 20, 11, 13, 24, 3, 1, 1)},
      {"7->40 5x5 s2", square(2, 7, 15, 33, 40, 5, 2, 2)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(amx_wgrad_fits(c.s));
    check_exact(c.s, 7);
  }
}

TEST_F(AmxWgrad, SeveralChunksPerImageAreCovered) {
  // The case above that must run more than one chunk per image (and a partial last chunk).
  const auto s = square(3, 32, 20, 200, 32, 3, 1, 1);
  const int64_t R = amx_wgrad_chunk_rows(s);
  EXPECT_LT(R, s.Ho);
  EXPECT_NE(s.Ho % R, 0) << "the last chunk should be partial";
}

TEST_F(AmxWgrad, RealValuesWithinTheFp32AccumulationBound) {
  const auto s = square(2, 32, 33, 47, 48, 3, 1, 1);
  Operands r = make(s, false, 11);
  std::vector<double> v, mag;
  reference(s, r, v, mag);
  std::fill_n(r.dW.data<float>(), r.dW.numel(), 0.0f);
  std::fill_n(r.db.data<float>(), s.O, 0.0f);
  run(s, r, 2, true);
  // Each element is a chain of at most N*Ho*Wo + 3 fp32 roundings: |error| <= n u sum|terms|.
  const double nu = (s.N * s.Ho * s.Wo + 3) * std::ldexp(1.0, -24);
  const int64_t nw = r.dW.numel();
  for (int64_t k = 0; k < nw; ++k) ASSERT_LE(std::abs(r.dW.data<float>()[k] - v[k]), nu * mag[k] + 1e-30) << k;
  for (int64_t o = 0; o < s.O; ++o) ASSERT_LE(std::abs(r.db.data<float>()[o] - v[nw + o]), nu * mag[nw + o]) << o;
  // And the bound is not vacuous: it is below one average pixel's share of sum|terms|.
  EXPECT_LT(nu, 1.0 / (s.N * s.Ho * s.Wo));
}

TEST_F(AmxWgrad, NullBiasLeavesNothingWritten) {
  const auto s = square(1, 16, 8, 8, 16, 3, 1, 1);
  Operands r = make(s, true, 3);
  run(s, r, 2, false);
  for (int64_t o = 0; o < s.O; ++o) EXPECT_EQ(r.db.data<float>()[o], -0.25f);
}

TEST(AmxWgradFits, RejectsWhatItCannotRun) {
  if (!amx_bf16_available()) GTEST_SKIP() << "no AMX-BF16 on this CPU";
  EXPECT_FALSE(amx_wgrad_fits(square(1, 16, 9, 9, 16, 3, 3, 1)));  // stride 3
  EXPECT_FALSE(amx_wgrad_fits(square(1, 16, 20, 20, 16, 9, 1, 4)));  // kernel 9
  EXPECT_TRUE(amx_wgrad_fits(square(1, 3, 8, 8, 8, 3, 1, 1)));       // any channel counts
  // Called anyway: an error naming the shape, nothing written.
  const auto bad = square(1, 16, 9, 9, 16, 3, 3, 1);
  std::vector<uint16_t> x(9 * 9 * 16), dy(3 * 3 * 16);
  std::vector<float> dW(16 * 16 * 9, 1.0f);
  std::vector<std::byte> scratch(amx_wgrad_scratch_bytes(square(1, 16, 9, 9, 16, 3, 2, 1), 1));
  try {
    amx_wgrad(bad, x.data(), dy.data(), scratch.data(), dW.data(), nullptr, 1);
    ADD_FAILURE() << "amx_wgrad ran a stride-3 shape";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stride 3"), std::string::npos) << e.what();
  }
  for (float v : dW) ASSERT_EQ(v, 1.0f);
  EXPECT_TRUE(amx_wgrad_fits(square(1, 16, 9, 9, 16, 3, 2, 1)));
  ::setenv("CRACKSEG_NO_AMX", "1", 1);
  EXPECT_FALSE(amx_bf16_available());
  EXPECT_FALSE(amx_wgrad_fits(square(1, 16, 9, 9, 16, 3, 2, 1)));
  ::unsetenv("CRACKSEG_NO_AMX");
}

}  // namespace
