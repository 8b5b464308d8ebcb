// ctest-link: crackseg_nn
// The convolution weight gradient on oneDNN's blocked layout (conv_impl.hpp: where oneDNN has
// no AVX-512 kernels its nhwc weight gradient is 2-4x slower, so the input and the output
// gradient are reordered for the blocked primitive). This process limits oneDNN to AVX2
// (ONEDNN_MAX_CPU_ISA, set before oneDNN's first use), so the path is taken on AVX-512 CI
// machines too. Checked: the backend says it took it; weight, bias and input gradients
// against the reference backend (two backward calls: the gradients accumulate), with a
// bias and without, stride 2, and with a fused ReLU (its d(pre-activation) is what gets
// reordered), the batch in one chunk and one image per chunk, 1 and 3 threads; a run of the
// layer twice gives the same bits. The same for the transposed convolutions' phase weight
// gradients (conv_transpose_phases.cpp: the gather writes dy's phases blocked, x is copied
// blocked): 3x3 stride 2 (Spiral-Net's, four phases of 2x2 / 2x1 / 1x2 / 1x1 taps), 2x2
// stride 2 (the U-Net's, 1x1 phases), with padding and output padding, and a fused ReLU.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdlib>
#include <cstring>

#include "tests/unit/test_layer_util.hpp"

using namespace crackseg;
using namespace crackseg::test;

namespace {

// The onednn run took the blocked path once, matches the reference backend, and a second
// onednn run gives the same gradient bits.
template <class Spec>
void expect_blocked_and_matching(const Spec& spec, const Dims& x, bool relu) {
  const ConvLayerRun want = run_conv_layer("reference", spec, x, relu), got = run_conv_layer("onednn", spec, x, relu);
  EXPECT_NE(got.summary.find("weight gradients of 1 convolutions on oneDNN's blocked layout"), std::string::npos)
      << got.summary;
  std::string at;
  EXPECT_LE(tolerance_ratio(got.out, want.out, 1e-5, 1e-4, &at), 1.0) << "out " << at;
  EXPECT_LE(tolerance_ratio(got.din, want.din, 1e-4, 1e-3, &at), 1.0) << "din " << at;
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (std::size_t k = 0; k < want.grads.size(); ++k)
    EXPECT_LE(tolerance_ratio(got.grads[k], want.grads[k], 1e-4, 1e-3, &at), 1.0) << "grad " << k << " " << at;
  const ConvLayerRun again = run_conv_layer("onednn", spec, x, relu);
  for (std::size_t k = 0; k < got.grads.size(); ++k)
    EXPECT_EQ(std::memcmp(again.grads[k].raw(), got.grads[k].raw(), got.grads[k].nbytes()), 0) << "grad " << k;
}

}  // namespace

TEST(ConvBlockedWgrad, MatchesReferenceWhereOnednnHasNoAvx512) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2: oneDNN's SSE4.1 kernels, not this path";
  ASSERT_EQ(0, setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1));  // before the first oneDNN call here
  struct C {
    Conv2dSpec spec;
    Dims x;
    bool relu;
  };
  const C cases[] = {
      // Weights past small_conv_wgrad.hpp's reach (it takes up to 32K taps x O, 64 channels)
      {Conv2dSpec{64, 64, 3, 1, 1, 1}, {2, 64, 13, 11}, false},
      {Conv2dSpec{8, 128, 3, 2, 1, 1, false}, {2, 8, 15, 9}, false},
      {Conv2dSpec{16, 96, 3, 1, 1, 1}, {3, 16, 10, 12}, true},
  };
  const int saved = omp_get_max_threads();
  // The whole batch in one chunk (the copies fit the default 64 MB), then one image per chunk
  // (a 1-byte budget: the chunk loop's offsets and the per-chunk accumulation), each at 1 and
  // 3 threads.
  for (const char* budget : {"", "1"}) {
    for (const int threads : {1, 3}) {
      for (const C& c : cases) {
        ASSERT_EQ(0, setenv("CRACKSEG_BLOCKED_WGRAD_BYTES", budget, 1));
        omp_set_num_threads(threads);
        SCOPED_TRACE(std::to_string(c.spec.in_c) + " -> " + std::to_string(c.spec.out_c) + (c.relu ? " + relu" : "") +
                     ", budget '" + budget + "', " + std::to_string(threads) + " threads");
        expect_blocked_and_matching(c.spec, c.x, c.relu);
      }
    }
  }
  omp_set_num_threads(saved);
  unsetenv("CRACKSEG_BLOCKED_WGRAD_BYTES");
}

TEST(ConvBlockedWgrad, TransposedConvPhasesMatchReferenceWhereOnednnHasNoAvx512) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2: oneDNN's SSE4.1 kernels, not this path";
  ASSERT_EQ(0, setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1));  // before the first oneDNN call here
  struct C {
    ConvTranspose2dSpec spec;
    Dims x;
    bool relu;
  };
  const C cases[] = {
      {ConvTranspose2dSpec{16, 16, 3, 2, 0, 0}, {2, 16, 7, 9}, false},         // Spiral-Net's
      {ConvTranspose2dSpec{32, 16, 2, 2, 0, 0}, {3, 32, 6, 5}, false},         // the U-Net's
      {ConvTranspose2dSpec{24, 16, 3, 2, 1, 1, false}, {2, 24, 5, 8}, true},  // padding, no bias, ReLU
  };
  const int saved = omp_get_max_threads();
  for (const int threads : {1, 3})
    for (const C& c : cases) {
      omp_set_num_threads(threads);
      SCOPED_TRACE(std::to_string(c.spec.in_c) + " -> " + std::to_string(c.spec.out_c) + " K" +
                   std::to_string(c.spec.kernel) + (c.relu ? " + relu" : "") + ", " + std::to_string(threads) +
                   " threads");
      expect_blocked_and_matching(c.spec, c.x, c.relu);
    }
  omp_set_num_threads(saved);
}
