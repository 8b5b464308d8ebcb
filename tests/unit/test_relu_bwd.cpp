// ctest-link: crackseg_nn
// The fp32 fused-activation backward of our own (kernels/cpu/relu_bwd.hpp) against oneDNN's
// eltwise_relu_use_dst_for_bwd backward, bit for bit: ReLU (alpha 0: a negative g gives -0)
// and LeakyReLU, outputs of both signs and exact zeros, sizes around the chunk and vector
// widths; the blocked form writes the same values in nhwc and in nChw{8,16}c (checked with
// oneDNN's reorder of the nhwc result), 1 and 3 threads. Replacing g * alpha by 0, or `>` by
// `>=`, fails it.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include <dnnl.hpp>

#include "kernels/cpu/relu_bwd.hpp"

using namespace crackseg::onednn;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

std::vector<float> onednn_relu_bwd(const std::vector<float>& y, const std::vector<float>& g, float alpha,
                                   const dnnl::memory::dims& dims) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  const dnnl::memory::desc md(dims, dt::f32, tag::nhwc);
  std::vector<float> d(y.size());
  dnnl::memory my(md, eng, const_cast<float*>(y.data())), mg(md, eng, const_cast<float*>(g.data())),
      md_(md, eng, d.data());
  dnnl::eltwise_forward::primitive_desc f(
      {dnnl::prop_kind::forward_training, dnnl::algorithm::eltwise_relu_use_dst_for_bwd, md, alpha, 0.0f}, eng);
  dnnl::eltwise_backward::primitive_desc b({dnnl::algorithm::eltwise_relu_use_dst_for_bwd, md, md, alpha, 0.0f}, eng,
                                           f);
  dnnl::eltwise_backward(b).execute(st, {{DNNL_ARG_DST, my}, {DNNL_ARG_DIFF_DST, mg}, {DNNL_ARG_DIFF_SRC, md_}});
  st.wait();
  return d;
}

void fill_yg(std::vector<float>& y, std::vector<float>& g, uint32_t seed) {
  std::mt19937 r(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (std::size_t i = 0; i < y.size(); ++i) {
    y[i] = i % 5 == 0 ? 0.0f : nd(r);  // exact zeros: not > 0
    y[i] = y[i] < 0.0f ? 0.0f : y[i];  // a ReLU output is >= 0; LeakyReLU's may be negative:
    if (i % 7 == 3) y[i] = -nd(r) * nd(r);
    g[i] = nd(r);
  }
}

}  // namespace

TEST(ReluBwd, GivesOneDnnEltwiseBackwardBits) {
  const int saved = omp_get_max_threads();
  for (const float alpha : {0.0f, 0.1f})
    for (const dnnl::memory::dims& dims : {dnnl::memory::dims{1, 3, 5, 7}, dnnl::memory::dims{3, 16, 27, 27},
                                          dnnl::memory::dims{2, 32, 50, 41}})
      for (const int threads : {1, 3}) {
        omp_set_num_threads(threads);
        const std::size_t n = static_cast<std::size_t>(dims[0] * dims[1] * dims[2] * dims[3]);
        std::vector<float> y(n), g(n), got(n, 7.0f);
        fill_yg(y, g, 5);
        const auto want = onednn_relu_bwd(y, g, alpha, dims);
        relu_bwd_f32(y.data(), g.data(), alpha, got.data(), static_cast<int64_t>(n));
        EXPECT_EQ(std::memcmp(want.data(), got.data(), n * sizeof(float)), 0)
            << "alpha " << alpha << ", " << n << " elements, " << threads << " threads";
      }
  omp_set_num_threads(saved);
}

TEST(ReluBwd, BlockedFormWritesBothLayouts) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  const int saved = omp_get_max_threads();
  for (const int64_t B : {8, 16})
    for (const dnnl::memory::dims& dims : {dnnl::memory::dims{2, 16, 27, 27}, dnnl::memory::dims{3, 32, 17, 19}})
      for (const int threads : {1, 3}) {
        omp_set_num_threads(threads);
        const std::size_t n = static_cast<std::size_t>(dims[0] * dims[1] * dims[2] * dims[3]);
        std::vector<float> y(n), g(n), d(n, 7.0f), dblk(n, 7.0f), want_blk(n);
        fill_yg(y, g, 9);
        const auto want = onednn_relu_bwd(y, g, 0.1f, dims);
        relu_bwd_f32_blocked(y.data(), g.data(), 0.1f, d.data(), dblk.data(), dims[0], dims[1], dims[2] * dims[3], B);
        EXPECT_EQ(std::memcmp(want.data(), d.data(), n * sizeof(float)), 0) << "nhwc, block " << B;
        dnnl::memory from({dims, dt::f32, tag::nhwc}, eng, const_cast<float*>(want.data()));
        dnnl::memory to({dims, dt::f32, B == 8 ? tag::nChw8c : tag::nChw16c}, eng, want_blk.data());
        dnnl::reorder(from, to).execute(st, from, to);
        st.wait();
        EXPECT_EQ(std::memcmp(want_blk.data(), dblk.data(), n * sizeof(float)), 0)
            << "blocked " << B << ", " << threads << " threads";
      }
  omp_set_num_threads(saved);
}
