// ctest-link: crackseg_nn
// fp32 -> bf16 copies for bf16 convolutions (kernels/cpu/to_bf16.hpp): our AVX512-BF16 loop
// must give exactly the bits of the rounding rule (round to nearest even, subnormals to a
// signed zero, Inf kept, NaN kept quiet: kernels/cuda/precision.hpp's bf16_bits, the rule
// the GPU path shares) and of oneDNN's own reorder, for every length (the 32- and 16-wide
// loops and masked tails, several OpenMP chunks) and any thread count; and ToBf16 must use
// it only where both sides are dense tensors of one layout, falling back to the reorder
// (same values) elsewhere.
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/to_bf16.hpp"
#include "kernels/cuda/precision.hpp"

using namespace crackseg;
using namespace crackseg::onednn;

namespace {

// Values that exercise every branch of the rounding: ties to even both ways, values just
// around ties, subnormals, zeros of both signs, the largest finite (rounds to Inf), Inf,
// NaNs with payloads, and ordinary random floats.
std::vector<float> awkward(std::size_t n, uint32_t seed) {
  std::vector<float> v(n);
  std::mt19937 g(seed);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0x00000001u, 0x807fffffu,
                              0x00000000u, 0x80000000u, 0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u,
                              0x7fc00001u, 0x7f800001u, 0xffa01234u, 0x7f7f8000u};
  for (std::size_t i = 0; i < n; ++i)
    v[i] = i % 7 == 3 ? std::bit_cast<float>(special[(i / 7) % std::size(special)]) : nd(g);
  return v;
}

std::vector<uint16_t> by_rule(const std::vector<float>& v) {
  std::vector<uint16_t> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = cuda::bf16_bits(v[i]);
  return r;
}

std::vector<uint16_t> by_onednn(const std::vector<float>& v, dnnl::memory::format_tag to_tag) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  const dnnl::memory::dims d{1, static_cast<dnnl::memory::dim>(v.size()), 1, 1};
  dnnl::memory from({d, dnnl::memory::data_type::f32, dnnl::memory::format_tag::nchw}, eng,
                    const_cast<float*>(v.data()));
  std::vector<uint16_t> r(v.size());
  dnnl::memory to({d, dnnl::memory::data_type::bf16, to_tag}, eng, r.data());
  dnnl::reorder(from, to).execute(s, from, to);
  s.wait();
  return r;
}

}  // namespace

TEST(ToBf16, OwnLoopGivesTheRuleAndOnednnBitsForEveryLength) {
  if (!avx512bf16_available()) GTEST_SKIP() << "no AVX512-BF16 here: the reorder runs instead (tested below)";
  const int saved = omp_get_max_threads();
  for (const std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{31},
                              std::size_t{32}, std::size_t{33}, std::size_t{1000}, std::size_t{16384},
                              std::size_t{16384 * 3 + 45}}) {
    const std::vector<float> v = awkward(n, static_cast<uint32_t>(n));
    const std::vector<uint16_t> rule = by_rule(v);
    for (const int threads : {1, 3}) {
      omp_set_num_threads(threads);
      std::vector<uint16_t> own(n + 8, 0xABCDu);  // guard words after the end must stay
      f32_to_bf16(v.data(), own.data(), static_cast<int64_t>(n));
      for (std::size_t i = 0; i < n; ++i)
        ASSERT_EQ(own[i], rule[i]) << "n " << n << " i " << i << " x bits " << std::hex << std::bit_cast<uint32_t>(v[i]);
      for (std::size_t i = n; i < n + 8; ++i) ASSERT_EQ(own[i], 0xABCDu) << "wrote past the end, n " << n;
    }
    // oneDNN's reorder agrees on every finite value (NaN payloads aside, which no rule pins)
    const std::vector<uint16_t> ref = by_onednn(v, dnnl::memory::format_tag::nchw);
    for (std::size_t i = 0; i < n; ++i) {
      if (std::isnan(v[i])) continue;
      ASSERT_EQ(rule[i], ref[i]) << "n " << n << " i " << i;
    }
  }
  omp_set_num_threads(saved);
}

TEST(ToBf16, UsesOwnLoopOnlyForDenseSameLayoutAndFallsBackOtherwise) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  const dnnl::memory::dims d{2, 5, 3, 7};
  const std::vector<float> v = awkward(2 * 5 * 3 * 7, 3);
  for (const bool same : {true, false}) {
    SCOPED_TRACE(same ? "nhwc -> nhwc" : "nhwc -> nchw");
    dnnl::memory from({d, dt::f32, tag::nhwc}, eng, const_cast<float*>(v.data()));
    std::vector<uint16_t> out(v.size(), 0);
    dnnl::memory to({d, dt::bf16, same ? tag::nhwc : tag::nchw}, eng, out.data());
    ToBf16 c;
    c.plan(from, to);
    EXPECT_EQ(c.own(), same && avx512bf16_available());
    c.run(s);
    // Our loop and oneDNN's AVX-512 reorder give the rule's bits. On a CPU without AVX-512
    // (AVX2 Zen 3, checked 2026-12-01) oneDNN 2.6's reorder turns -0 into +0 (a reorder
    // computes alpha * x + beta: -0 + 0 = +0); bf16 training cannot run there (it needs
    // AVX512-BF16), so only the values must agree.
    const bool exact_bits = c.own() || onednn_has_avx512_core();  // oneDNN's effective ISA (DNNL_MAX_CPU_ISA counts)
    // element (n, ch, h, w): nhwc source offset vs the destination's own layout
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t ch = 0; ch < 5; ++ch)
        for (int64_t h = 0; h < 3; ++h)
          for (int64_t w = 0; w < 7; ++w) {
            const int64_t src = ((n * 3 + h) * 7 + w) * 5 + ch;
            const int64_t dst = same ? src : ((n * 5 + ch) * 3 + h) * 7 + w;
            const float x = v[static_cast<std::size_t>(src)];
            if (std::isnan(x)) continue;
            const uint16_t got = out[static_cast<std::size_t>(dst)], want = cuda::bf16_bits(x);
            if (exact_bits) {
              ASSERT_EQ(got, want) << n << ch << h << w;
            } else {  // the same value; a zero may lose its sign (see above)
              ASSERT_EQ(std::bit_cast<float>(uint32_t{got} << 16), std::bit_cast<float>(uint32_t{want} << 16))
                  << n << ch << h << w << " x bits " << std::hex << std::bit_cast<uint32_t>(x);
            }
          }
  }
}
