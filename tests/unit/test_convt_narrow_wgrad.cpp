// ctest-link: crackseg_nn
// Weight and bias gradient of the narrow transposed convolutions (kernels/cpu/
// convt_narrow_wgrad.hpp: Spiral-Net's 16 -> 1 layers). Checked against a double-precision
// sum of the definition, with the error bounded by the sum of |x * g| per weight (so a
// missing or doubled tap, a wrong index or a lost row fails it at any magnitude), for the
// fast paths (K = 2, 3, 4 with 16-input blocks, all taps inside) and every generic case: input counts
// that are not a multiple of 16, several outputs, padding that drops taps, output padding,
// other kernels, bf16 operands; that it adds into dW and db; and that the bits do not depend
// on the thread count (the rows are split between threads, the sums are not).
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/convt_narrow_wgrad.hpp"

using namespace crackseg::onednn;

namespace {

NarrowWgradShape shape(int64_t N, int64_t H, int64_t W, int64_t I, int64_t O, int64_t K, int64_t S, int64_t p,
                       int64_t op) {
  return {N, H, W, I, (H - 1) * S - 2 * p + K + op, (W - 1) * S - 2 * p + K + op, O, K, S, p};
}

uint16_t bf16_of(float v) { return static_cast<uint16_t>(std::bit_cast<uint32_t>(v) >> 16); }  // truncation: test data
float f_of(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

struct Data {
  std::vector<float> x, g;
};

Data make_data(const NarrowWgradShape& s, uint32_t seed) {
  std::mt19937 r(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  Data d;
  d.x.resize(static_cast<std::size_t>(s.N * s.H * s.W * s.I));
  d.g.resize(static_cast<std::size_t>(s.N * s.Ho * s.Wo * s.O));
  for (float& v : d.x) v = nd(r);
  for (float& v : d.g) v = nd(r) * 0.01f;
  return d;
}

// Exact-ish reference: sums in double, and the sum of |terms| for the error bound.
void reference(const NarrowWgradShape& s, const Data& d, std::vector<double>& dw, std::vector<double>& dw_abs,
               std::vector<double>& db, std::vector<double>& db_abs) {
  dw.assign(static_cast<std::size_t>(s.I * s.O * s.K * s.K), 0.0);
  dw_abs = dw;
  db.assign(static_cast<std::size_t>(s.O), 0.0);
  db_abs = db;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t ih = 0; ih < s.H; ++ih)
      for (int64_t iw = 0; iw < s.W; ++iw)
        for (int64_t kh = 0; kh < s.K; ++kh)
          for (int64_t kw = 0; kw < s.K; ++kw) {
            const int64_t oh = s.S * ih + kh - s.pad, ow = s.S * iw + kw - s.pad;
            if (oh < 0 || oh >= s.Ho || ow < 0 || ow >= s.Wo) continue;
            for (int64_t i = 0; i < s.I; ++i)
              for (int64_t o = 0; o < s.O; ++o) {
                const double t = static_cast<double>(d.x[static_cast<std::size_t>(((n * s.H + ih) * s.W + iw) * s.I + i)]) *
                                 d.g[static_cast<std::size_t>(((n * s.Ho + oh) * s.Wo + ow) * s.O + o)];
                const auto k = static_cast<std::size_t>(((i * s.O + o) * s.K + kh) * s.K + kw);
                dw[k] += t;
                dw_abs[k] += std::abs(t);
              }
          }
  for (std::size_t k = 0; k < d.g.size(); ++k) {
    db[k % static_cast<std::size_t>(s.O)] += d.g[k];
    db_abs[k % static_cast<std::size_t>(s.O)] += std::abs(d.g[k]);
  }
}

struct Out {
  std::vector<float> dw, db;
};

Out run(const NarrowWgradShape& s, const Data& d, bool bf16, int threads, float start = 0.0f) {
  Out o;
  o.dw.assign(static_cast<std::size_t>(s.I * s.O * s.K * s.K), start);
  o.db.assign(static_cast<std::size_t>(s.O), start);
  std::vector<float> scratch(narrow_wgrad_scratch_floats(s), std::nanf(""));  // must not be read before written
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  if (bf16) {
    std::vector<uint16_t> x(d.x.size()), g(d.g.size());
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = bf16_of(d.x[k]);
    for (std::size_t k = 0; k < g.size(); ++k) g[k] = bf16_of(d.g[k]);
    narrow_convt_wgrad(s, x.data(), g.data(), scratch.data(), o.dw.data(), o.db.data());
  } else {
    narrow_convt_wgrad(s, d.x.data(), d.g.data(), scratch.data(), o.dw.data(), o.db.data());
  }
  omp_set_num_threads(before);
  return o;
}

// The bf16 kernel must see the rounded operands: the reference gets the same ones.
Data as_bf16(const Data& d) {
  Data r = d;
  for (float& v : r.x) v = f_of(bf16_of(v));
  for (float& v : r.g) v = f_of(bf16_of(v));
  return r;
}

void check_against_reference(const NarrowWgradShape& s, bool bf16, uint32_t seed) {
  const Data d = make_data(s, seed);
  std::vector<double> dw, dw_abs, db, db_abs;
  reference(s, bf16 ? as_bf16(d) : d, dw, dw_abs, db, db_abs);
  const Out o = run(s, d, bf16, 2);
  // fp32 sums over at most W products per row, then double: a few float ulps of sum |t|.
  for (std::size_t k = 0; k < dw.size(); ++k)
    ASSERT_NEAR(o.dw[k], dw[k], 1e-6 * dw_abs[k] + 1e-30) << "dW element " << k;
  for (std::size_t k = 0; k < db.size(); ++k) ASSERT_NEAR(o.db[k], db[k], 1e-6 * db_abs[k] + 1e-30) << "db " << k;
}

}  // namespace

TEST(NarrowConvtWgrad, SpiralShapeFastPath) {
  check_against_reference(shape(2, 31, 29, 16, 1, 3, 2, 0, 0), false, 1);
}

TEST(NarrowConvtWgrad, GenericCases) {
  struct C {
    const char* what;
    NarrowWgradShape s;
  };
  const C cases[] = {
      {"I=20 (block + 4), O=3", shape(2, 9, 11, 20, 3, 3, 2, 0, 0)},
      {"the U-Net base 8's last up-conv: K=2, 16 -> 8", shape(2, 9, 7, 16, 8, 2, 2, 0, 0)},
      {"the U-Net base 4's: K=2, 8 -> 4 (one 8-input vector)", shape(2, 9, 7, 8, 4, 2, 2, 0, 0)},
      {"K=2, 16 -> 8, one image, one row", shape(1, 1, 7, 16, 8, 2, 2, 0, 0)},
      {"I=3, O=1", shape(3, 8, 7, 3, 1, 3, 2, 0, 0)},
      {"padding 1, output padding 1", shape(2, 9, 10, 16, 2, 3, 2, 1, 1)},
      {"padding 1: the last pixel's last tap falls outside", shape(2, 9, 10, 32, 1, 3, 2, 1, 0)},
      {"K=4 p=1", shape(2, 7, 8, 16, 1, 4, 2, 1, 0)},
      {"K=5 p=2 op=1", shape(2, 6, 5, 32, 4, 5, 2, 2, 1)},
      {"K=1 op=1", shape(2, 6, 5, 16, 1, 1, 2, 0, 1)},
      {"K=3 p=1 one input row", shape(2, 1, 6, 16, 1, 3, 2, 1, 0)},
      {"stride 3 K=2", shape(2, 5, 6, 17, 2, 2, 3, 0, 0)},
  };
  for (const C& c : cases) {
    SCOPED_TRACE(c.what);
    check_against_reference(c.s, false, 7);
    check_against_reference(c.s, true, 8);
  }
}

TEST(NarrowConvtWgrad, Bf16Operands) { check_against_reference(shape(2, 33, 35, 16, 1, 3, 2, 0, 0), true, 3); }

TEST(NarrowConvtWgrad, AddsIntoTheGradients) {
  const NarrowWgradShape s = shape(2, 9, 8, 16, 2, 3, 2, 0, 0);
  const Data d = make_data(s, 5);
  const Out zero = run(s, d, false, 1), three = run(s, d, false, 1, 3.0f);
  for (std::size_t k = 0; k < zero.dw.size(); ++k) EXPECT_EQ(three.dw[k], 3.0f + zero.dw[k]) << k;
  for (std::size_t k = 0; k < zero.db.size(); ++k) EXPECT_EQ(three.db[k], 3.0f + zero.db[k]) << k;
}

// Big enough that rows, the row sums and the bias rows are split between threads.
TEST(NarrowConvtWgrad, SameBitsForAnyThreadCount) {
  for (const NarrowWgradShape& s : {shape(4, 63, 63, 16, 1, 3, 2, 0, 0), shape(2, 40, 41, 48, 3, 3, 2, 1, 1)}) {
    const Data d = make_data(s, 11);
    for (bool bf16 : {false, true}) {
      const Out one = run(s, d, bf16, 1);
      for (int t : {2, 3, 5}) {
        const Out o = run(s, d, bf16, t);
        for (std::size_t k = 0; k < one.dw.size(); ++k)
          ASSERT_EQ(std::bit_cast<uint32_t>(o.dw[k]), std::bit_cast<uint32_t>(one.dw[k])) << t << " threads, dW " << k;
        for (std::size_t k = 0; k < one.db.size(); ++k)
          ASSERT_EQ(std::bit_cast<uint32_t>(o.db[k]), std::bit_cast<uint32_t>(one.db[k])) << t << " threads, db " << k;
      }
    }
  }
}

// Every row-loop variant this CPU runs (AVX-512 with 16-input vectors, AVX2 + FMA with 8, the
// portable one), chosen with CRACKSEG_NO_AVX512 / CRACKSEG_NO_AVX2, against the reference;
// and the two FMA variants give the same bits (each lane's sum is the same FMA chain). The
// 8-input AVX2 variant walks the inputs in two halves: a wrong half offset fails the
// reference check, here and in the layer tests.
TEST(NarrowConvtWgrad, EveryIsaVariantMatchesTheReference) {
  const NarrowWgradShape shapes[] = {shape(2, 31, 29, 16, 1, 3, 2, 0, 0), shape(2, 9, 11, 20, 3, 3, 2, 0, 0),
                                     shape(2, 9, 7, 16, 8, 2, 2, 0, 0), shape(2, 7, 8, 16, 1, 4, 2, 1, 0)};
  struct V {
    const char* name;
    const char *no512, *no2;
    bool runs;
  };
  const V variants[] = {{"avx512", "0", "0", static_cast<bool>(__builtin_cpu_supports("avx512f"))},
                        {"avx2", "1", "0", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
                        {"portable", "1", "1", true}};
  for (const NarrowWgradShape& s : shapes) {
    const Data d = make_data(s, 13);
    std::vector<Out> fma_outs;
    for (const V& v : variants) {
      if (!v.runs) continue;
      SCOPED_TRACE(v.name);
      setenv("CRACKSEG_NO_AVX512", v.no512, 1);
      setenv("CRACKSEG_NO_AVX2", v.no2, 1);
      check_against_reference(s, false, 1);
      if (std::string(v.name) != "portable") fma_outs.push_back(run(s, d, false, 1));
    }
    for (std::size_t k = 1; k < fma_outs.size(); ++k)
      for (std::size_t e = 0; e < fma_outs[0].dw.size(); ++e)
        ASSERT_EQ(std::bit_cast<uint32_t>(fma_outs[k].dw[e]), std::bit_cast<uint32_t>(fma_outs[0].dw[e])) << "dW " << e;
  }
  unsetenv("CRACKSEG_NO_AVX512");
  unsetenv("CRACKSEG_NO_AVX2");
}
