// ctest-link: crackseg_nn
// Our nhwc -> nChw{8,16}c copy (kernels/cpu/blocked_copy.hpp) against oneDNN's own reorder,
// bit for bit: channel counts of one and several blocks, pixel counts around the copy's tile
// (256) so that tiles end mid-image, several images, 1 and 3 threads. A copy that mixes up
// the image, block or pixel offset, or drops the last partial tile, fails. And
// dense_channel_block() names the block only for the dense blocked layouts it can copy.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <vector>

#include "kernels/cpu/blocked_copy.hpp"

using namespace crackseg::onednn;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

TEST(BlockedCopy, GivesOneDnnReorderBitsForAnyShapeAndThreadCount) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream st(eng);
  struct S {
    int64_t N, C, H, W, B;
  } shapes[] = {{1, 8, 1, 1, 8},   {2, 16, 17, 15, 8}, {3, 24, 16, 16, 8}, {2, 32, 23, 23, 8},
                {1, 16, 9, 31, 16}, {3, 48, 16, 17, 16}, {4, 64, 5, 7, 8}};
  const int saved = omp_get_max_threads();
  for (const S& s : shapes)
    for (const int threads : {1, 3}) {
      omp_set_num_threads(threads);
      const std::size_t n = static_cast<std::size_t>(s.N * s.C * s.H * s.W);
      std::vector<float> a(n), want(n, -1.0f), got(n, -2.0f);
      for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<float>(i) * 0.25f - 7.0f;  // every value distinct
      const dnnl::memory::dims dims{s.N, s.C, s.H, s.W};
      const dnnl::memory::desc blk(dims, dt::f32, s.B == 8 ? tag::nChw8c : tag::nChw16c);
      dnnl::memory from({dims, dt::f32, tag::nhwc}, eng, a.data()), to(blk, eng, want.data());
      dnnl::reorder(from, to).execute(st, from, to);
      st.wait();
      ASSERT_EQ(dense_channel_block(blk), s.B);
      nhwc_to_blocked(a.data(), got.data(), s.N, s.C, s.H * s.W, s.B);
      EXPECT_EQ(std::memcmp(want.data(), got.data(), n * sizeof(float)), 0)
          << s.N << "x" << s.C << "x" << s.H << "x" << s.W << " block " << s.B << ", " << threads << " threads";
    }
  omp_set_num_threads(saved);
}

TEST(BlockedCopy, NamesTheBlockOnlyForDenseBlockedF32) {
  const dnnl::memory::dims d{2, 16, 5, 5};
  EXPECT_EQ(dense_channel_block(dnnl::memory::desc(d, dt::f32, tag::nChw8c)), 8);
  EXPECT_EQ(dense_channel_block(dnnl::memory::desc(d, dt::f32, tag::nChw16c)), 16);
  EXPECT_EQ(dense_channel_block(dnnl::memory::desc(d, dt::f32, tag::nhwc)), 0);
  EXPECT_EQ(dense_channel_block(dnnl::memory::desc(d, dt::f32, tag::nchw)), 0);
  EXPECT_EQ(dense_channel_block(dnnl::memory::desc(d, dt::bf16, tag::nChw8c)), 0);
  // 12 channels in blocks of 8: padded to 16, which our copy does not write.
  EXPECT_EQ(dense_channel_block(dnnl::memory::desc({2, 12, 5, 5}, dt::f32, tag::nChw8c)), 0);
}
