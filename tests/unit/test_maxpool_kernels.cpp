// ctest-link: crackseg_nn
// The CPU backend's own max pooling loops (kernels/cpu/maxpool_kernels.hpp) against the rule
// written out here: the first maximum in window order (kh, kw) wins, padding never wins; the
// input gradient is 0 plus the output gradients of the windows an element won, added in
// output order. Inputs full of ties (small integers), so a loop that lets a later equal value
// win, or a vector lane that picks another window position, fails; windows that overlap
// (K > S) and that do not (K == S, the vectorised path), with padding, sizes that leave rows
// and columns no window reaches (their gradient must be 0), channel counts around the
// vector widths; every output and gradient element compared bit for bit, for 1 and 3 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <vector>

#include "kernels/cpu/maxpool_kernels.hpp"
#include "tests/support/env.hpp"

using namespace crackseg::onednn;

namespace {

struct Want {
  std::vector<float> y, dx;
};

Want by_rule(const PoolShape& s, const std::vector<float>& x, const std::vector<float>& dy) {
  Want w;
  w.y.assign(static_cast<std::size_t>(s.N * s.Ho * s.Wo * s.C), 0.0f);
  w.dx.assign(x.size(), 0.0f);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.Ho; ++oh)
      for (int64_t ow = 0; ow < s.Wo; ++ow)
        for (int64_t c = 0; c < s.C; ++c) {
          int64_t at = -1;
          for (int64_t kh = 0; kh < s.K; ++kh)
            for (int64_t kw = 0; kw < s.K; ++kw) {
              const int64_t ih = oh * s.S - s.P + kh, iw = ow * s.S - s.P + kw;
              if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
              const int64_t i = ((n * s.H + ih) * s.W + iw) * s.C + c;
              if (at < 0 || x[static_cast<std::size_t>(i)] > x[static_cast<std::size_t>(at)]) at = i;
            }
          const auto o = static_cast<std::size_t>(((n * s.Ho + oh) * s.Wo + ow) * s.C + c);
          if (at < 0) continue;
          w.y[o] = x[static_cast<std::size_t>(at)];
          w.dx[static_cast<std::size_t>(at)] += dy[o];
        }
  return w;
}

PoolShape shape(int64_t N, int64_t H, int64_t W, int64_t C, int64_t K, int64_t S, int64_t P) {
  return {N, H, W, C, (H + 2 * P - K) / S + 1, (W + 2 * P - K) / S + 1, K, S, P};
}

}  // namespace

TEST(MaxPoolKernels, FirstMaximumWinsAndGradientsGoToItBitForBit) {
  const PoolShape shapes[] = {
      shape(3, 27, 27, 16, 2, 2, 0),  // the patch CNN's pool: row/column 26 in no window
      shape(2, 13, 13, 32, 2, 2, 0),
      shape(2, 8, 10, 37, 2, 2, 0),   // channels past the vector widths
      shape(2, 9, 7, 1, 2, 2, 0),     // one channel
      shape(2, 9, 11, 5, 2, 2, 1),    // disjoint windows with padding
      shape(2, 9, 11, 5, 3, 2, 1),    // overlapping, padded
      shape(2, 7, 8, 16, 3, 1, 0),    // overlapping, stride 1
      shape(1, 6, 6, 3, 4, 3, 1),
      shape(2, 9, 11, 48, 3, 2, 1),  // 16k channels (the AVX-512 rows), overlapping, padded
      shape(2, 9, 11, 32, 2, 2, 1),  // 16k channels, disjoint, padded
      // large enough for the loops' OpenMP branches (> 16384 elements a call), AVX-512 rows too
      shape(4, 30, 34, 32, 2, 2, 0),
      shape(4, 41, 39, 16, 3, 2, 1),
  };
  const int saved = omp_get_max_threads();
  std::mt19937 g(5);
  for (const PoolShape& s : shapes) {
    SCOPED_TRACE("K " + std::to_string(s.K) + " S " + std::to_string(s.S) + " P " + std::to_string(s.P) + " C " +
                 std::to_string(s.C));
    std::vector<float> x(static_cast<std::size_t>(s.N * s.H * s.W * s.C)), dy(static_cast<std::size_t>(s.N * s.Ho * s.Wo * s.C));
    std::uniform_int_distribution<int> small(-2, 2);  // ties everywhere
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (float& v : x) v = static_cast<float>(small(g));
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = i % 11 == 0 ? -0.0f : nd(g);  // 0 + -0 = +0
    const Want want = by_rule(s, x, dy);
    // the AVX-512 rows (C a multiple of 16, on CPUs that have them) and the portable loops
    for (const int threads : {1, 3})
      for (const char* no512 : {"0", "1"}) {
        const crackseg::test::ScopedEnv path("CRACKSEG_NO_AVX512", no512);
        SCOPED_TRACE(std::string("CRACKSEG_NO_AVX512=") + no512);
        omp_set_num_threads(threads);
        std::vector<float> y(want.y.size(), -7.0f), dx(x.size(), -7.0f);  // every element must be written
        std::vector<uint8_t> win(y.size());
        maxpool_forward(s, x.data(), y.data(), win.data());
        maxpool_backward(s, dy.data(), win.data(), dx.data());
        ASSERT_EQ(std::memcmp(y.data(), want.y.data(), y.size() * sizeof(float)), 0) << threads << " threads";
        for (std::size_t i = 0; i < dx.size(); ++i)
          ASSERT_EQ(std::memcmp(&dx[i], &want.dx[i], sizeof(float)), 0)
              << threads << " threads, dx element " << i << ": " << dx[i] << " vs " << want.dx[i];
      }
  }
  omp_set_num_threads(saved);
}
