// ctest-link: crackseg_nn
// The CPU batchnorm kernels (kernels/cpu/batchnorm_kernels.hpp) against a double-precision
// evaluation of the same formulas, for the channel counts that take each code path (1; groups
// of 64, 32, 16 and a tail), with and without a fused ReLU / LeakyReLU; the same bits for 1
// and 2 OpenMP threads; an accurate variance for data far from zero (a one-pass
// E[x^2] - E[x]^2 in float would lose it); and backward's activation mask, recomputed from x,
// equal to the sign forward wrote, even for pre-activations that round to exactly zero.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/batchnorm_kernels.hpp"

using namespace crackseg::onednn;

namespace {

struct Data {
  BnShape s;
  std::vector<float> x, dy, gamma, beta;
};

Data make(int64_t rows, int64_t width, int64_t C, double offset, uint32_t seed) {
  Data d;
  d.s = {rows, width, C};
  std::mt19937 g(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  const auto N = static_cast<std::size_t>(rows * width * C);
  d.x.resize(N), d.dy.resize(N);
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t c = i % static_cast<std::size_t>(C);
    d.x[i] = static_cast<float>(offset + 0.5 * static_cast<double>(c) + (1.0 + 0.1 * static_cast<double>(c)) * n(g));
    d.dy[i] = n(g);
  }
  for (int64_t c = 0; c < C; ++c) d.gamma.push_back(0.5f + 0.1f * n(g)), d.beta.push_back(0.2f * n(g));
  return d;
}

struct Out {
  std::vector<double> mean, var, invstd;
  std::vector<float> y, dx, dscale, dshift;
  std::vector<float> m, a;  // forward's constants: y = act((x - m) * a + beta)
};

// One training forward and backward through the kernels, as the oneDNN backend's layer runs them.
Out run(const Data& d, BnAct act, double eps = 1e-5, const BnDropout* drop = nullptr) {
  const auto C = static_cast<std::size_t>(d.s.channels);
  Out o;
  BnWork w;
  w.reserve(d.s);
  o.mean.resize(C), o.var.resize(C), o.invstd.resize(C);
  bn_batch_stats(d.x.data(), d.s, w, o.mean, o.var);
  std::vector<float> m(C), a(C);
  for (std::size_t c = 0; c < C; ++c) {
    o.invstd[c] = 1.0 / std::sqrt(o.var[c] + eps);
    m[c] = static_cast<float>(o.mean[c]);
    a[c] = static_cast<float>(d.gamma[c] * o.invstd[c]);
  }
  o.y.resize(d.x.size());
  bn_apply(d.x.data(), o.y.data(), d.s, m, a, d.beta, act, drop);
  o.dx.resize(d.x.size());
  o.dscale.assign(C, 0.0f), o.dshift.assign(C, 0.0f);
  o.m = m, o.a = a;
  bn_backward(d.x.data(), d.dy.data(), o.dx.data(), d.s, w, {o.m, o.a, d.beta, drop}, o.invstd, d.gamma, act,
              o.dscale.data(), o.dshift.data());
  return o;
}

// The same in double, straight from the definitions.
void check_against_double(const Data& d, BnAct act, const Out& o, double var_tol = 1e-5, double val_tol = 2e-5) {
  const int64_t C = d.s.channels, P = d.s.pixels();
  const double eps = 1e-5;
  for (int64_t c = 0; c < C; ++c) {
    double m = 0.0, v = 0.0;
    for (int64_t p = 0; p < P; ++p) m += d.x[p * C + c];
    m /= static_cast<double>(P);
    for (int64_t p = 0; p < P; ++p) v += (d.x[p * C + c] - m) * (d.x[p * C + c] - m);
    v /= static_cast<double>(P);
    ASSERT_NEAR(o.mean[c], m, 1e-6 * (1.0 + std::abs(m))) << "channel " << c;
    ASSERT_NEAR(o.var[c], v, var_tol * v) << "channel " << c;
    const double inv = 1.0 / std::sqrt(v + eps);
    std::vector<double> g(static_cast<std::size_t>(P));
    double sg = 0.0, sgx = 0.0;
    for (int64_t p = 0; p < P; ++p) {
      const double pre = (d.x[p * C + c] - m) * inv * d.gamma[c] + d.beta[c];
      const double y = act.on && pre <= 0.0 ? pre * act.slope : pre;
      ASSERT_NEAR(o.y[p * C + c], y, val_tol * (1.0 + std::abs(y))) << "y at pixel " << p << " channel " << c;
      g[p] = act.on && pre <= 0.0 ? d.dy[p * C + c] * act.slope : d.dy[p * C + c];
      sg += g[p];
      sgx += g[p] * (d.x[p * C + c] - m) * inv;
    }
    EXPECT_NEAR(o.dshift[c], sg, 5 * val_tol * (1.0 + std::abs(sg))) << "channel " << c;
    EXPECT_NEAR(o.dscale[c], sgx, 5 * val_tol * (1.0 + std::abs(sgx))) << "channel " << c;
    for (int64_t p = 0; p < P; ++p) {
      const double xh = (d.x[p * C + c] - m) * inv;
      const double dx = d.gamma[c] * inv * (g[p] - sg / P - xh * sgx / P);
      ASSERT_NEAR(o.dx[p * C + c], dx, 5 * val_tol * (1.0 + std::abs(dx))) << "dx at pixel " << p << " channel " << c;
    }
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(BatchnormKernels, MatchDoubleForEveryChannelPath) {
  // C = 1 (vectorised over pixels), 16, 32, 64, 112 (64 + 32 + 16), 3 and 43 (tails)
  for (const int64_t C : {1, 3, 16, 32, 43, 64, 112})
    for (const BnAct act : {BnAct{}, BnAct{true, 0.0f}, BnAct{true, 0.1f}}) {
      SCOPED_TRACE("C = " + std::to_string(C) + " act " + std::to_string(act.on) + " slope " +
                   std::to_string(act.slope));
      const Data d = make(6, 19, C, 0.3, 7 + static_cast<uint32_t>(C));
      check_against_double(d, act, run(d, act));
    }
}

TEST(BatchnormKernels, VarianceFarFromZero) {
  // mean ~1e4, std ~1: float E[x^2] - E[x]^2 would lose the variance to cancellation
  // (x^2 ~ 1e8 carries ~8 units of rounding per element: errors of order 10 against a variance
  // of 1). The per-row float sums (~5e5) still round, so the variance is held to 1e-3 here,
  // and outputs to 1e-3 (the float mean itself is only good to ulp(1e4) ~ 1e-3).
  for (const int64_t C : {1, 16, 43}) {
    const Data d = make(8, 50, C, 1.0e4, 3);
    check_against_double(d, BnAct{}, run(d, BnAct{}), 1e-3, 1e-3);
  }
}

TEST(BatchnormKernels, SameBitsForOneAndTwoThreads) {
  // rows are split between threads; the per-row partials are combined in row order, so the
  // thread count must not change a bit (large enough for the kernels to go parallel)
  const int saved = omp_get_max_threads();
  for (const int64_t C : {1, 40, 64}) {
    const Data d = make(128, 300, C, 0.5, 11);  // >= 32768 elements even for C = 1
    const BnAct act{true, 0.01f};
    // also with a fused dropout (2 samples of 64 rows; random keep words): rows straddle the
    // mask's tiles and are split between threads differently
    BnDropout drop{nullptr, DropoutTiles(2, C, 64 * 300), 1.25f};
    std::vector<uint64_t> words(static_cast<std::size_t>(drop.tiles.words()));
    std::mt19937_64 g(5);
    for (auto& wd : words) wd = g();
    drop.words = words.data();
    for (const BnDropout* dr : {static_cast<const BnDropout*>(nullptr), static_cast<const BnDropout*>(&drop)}) {
      omp_set_num_threads(1);
      const Out one = run(d, act, 1e-5, dr);
      omp_set_num_threads(2);
      const Out two = run(d, act, 1e-5, dr);
      EXPECT_TRUE(same_bits(one.y, two.y)) << C << " dropout " << (dr != nullptr);
      EXPECT_TRUE(same_bits(one.dx, two.dx)) << C << " dropout " << (dr != nullptr);
      EXPECT_TRUE(same_bits(one.dscale, two.dscale)) << C << " dropout " << (dr != nullptr);
      EXPECT_TRUE(same_bits(one.dshift, two.dshift)) << C << " dropout " << (dr != nullptr);
      EXPECT_EQ(std::memcmp(one.var.data(), two.var.data(), one.var.size() * sizeof(double)), 0) << C;
      if (dr) {  // and the mask really applied: random words drop about half
        std::size_t zeros = 0;
        for (const float y : one.y) zeros += y == 0.0f;
        EXPECT_GT(zeros, one.y.size() / 4) << C;
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(BatchnormKernels, SumsOnlyWithoutInputGradient) {
  // dx == nullptr (no consumer of the input gradient): the parameter gradients are the same
  const Data d = make(5, 9, 16, 0.0, 5);
  const Out full = run(d, BnAct{true, 0.0f});
  BnWork w;
  w.reserve(d.s);
  std::vector<float> ds(16, 0.0f), db(16, 0.0f);
  bn_backward(d.x.data(), d.dy.data(), nullptr, d.s, w, {full.m, full.a, d.beta}, full.invstd, d.gamma,
              BnAct{true, 0.0f}, ds.data(), db.data());
  EXPECT_TRUE(same_bits(ds, full.dscale));
  EXPECT_TRUE(same_bits(db, full.dshift));
}

TEST(BatchnormKernels, BackwardMaskIsTheSignForwardWrote) {
  // Backward never reads the output: it recomputes v = (x - m) * a + b. Data is placed on the
  // kink: a third of each channel's values walk ulp by ulp through x* = m - b / a, where the
  // product (x - m) * a rounds to -b (v == 0: inactive) or just beside it; an FMA-contracted
  // recomputation (one rounding instead of two) or any other formula would flip some of them.
  // The gradient is then checked against the mask read from forward's output (y > 0), which
  // is what the layer used to read.
  for (const int64_t C : {1, 16, 43}) {
    SCOPED_TRACE("C = " + std::to_string(C));
    Data d = make(8, 60, C, 0.0, 21);
    for (int64_t c = 0; c < C; ++c) d.beta[static_cast<std::size_t>(c)] = -0.3f - 0.01f * static_cast<float>(c);
    const BnAct act{true, 0.05f};
    const int64_t P = d.s.pixels();
    Out o;
    for (int iter = 0; iter < 40; ++iter) {  // x* depends on the mean, which the kink values move (converges ~3x per round)
      o = run(d, act);
      for (int64_t c = 0; c < C; ++c) {
        const auto cc = static_cast<std::size_t>(c);
        float xs = o.m[cc] - d.beta[cc] / o.a[cc];
        for (int64_t k = 0; k < 80; ++k) xs = std::nextafter(xs, -1e30f);
        for (int64_t p = 0; p < P; p += 3) {
          d.x[static_cast<std::size_t>(p * C + c)] = xs;
          xs = std::nextafter(xs, 1e30f);
        }
      }
    }
    o = run(d, act);
    int64_t zeros = 0;
    for (const float y : o.y) zeros += y == 0.0f;
    EXPECT_GT(zeros, 0) << "no pre-activation rounded to zero: the data misses the kink";
    for (int64_t c = 0; c < C; ++c) {
      double sg = 0.0, sgx = 0.0;
      for (int64_t p = 0; p < P; ++p) {
        const auto i = static_cast<std::size_t>(p * C + c);
        const double g = o.y[i] > 0.0f ? d.dy[i] : d.dy[i] * act.slope;
        sg += g, sgx += g * (d.x[i] - o.m[static_cast<std::size_t>(c)]);
      }
      EXPECT_NEAR(o.dshift[static_cast<std::size_t>(c)], sg, 1e-4 * (1.0 + std::abs(sg))) << "channel " << c;
      EXPECT_NEAR(o.dscale[static_cast<std::size_t>(c)], sgx * o.invstd[static_cast<std::size_t>(c)],
                  1e-4 * (1.0 + std::abs(sgx * o.invstd[static_cast<std::size_t>(c)])))
          << "channel " << c;
      for (int64_t p = 0; p < P; ++p) {  // a flipped mask moves dx by ~gamma * invstd * dy
        const auto i = static_cast<std::size_t>(p * C + c);
        const double g = o.y[i] > 0.0f ? d.dy[i] : d.dy[i] * act.slope;
        const double a = d.gamma[static_cast<std::size_t>(c)] * o.invstd[static_cast<std::size_t>(c)];
        const double dx = a * (g - sg / P) - a * o.invstd[static_cast<std::size_t>(c)] * o.invstd[static_cast<std::size_t>(c)] *
                                                  (d.x[i] - o.m[static_cast<std::size_t>(c)]) * sgx / P;
        ASSERT_NEAR(o.dx[i], dx, 1e-4 * (1.0 + std::abs(dx))) << "pixel " << p << " channel " << c;
      }
    }
  }
}
