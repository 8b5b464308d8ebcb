#include "kernels/cpu/blocked_copy.hpp"

#include <cstring>

#include "kernels/cpu/parallel_tiles.hpp"

namespace crackseg::onednn {

namespace {

template <int64_t B>
void copy_tile(const float* s, float* d, int64_t C, int64_t HW, int64_t p0, int64_t p1) {
  const int64_t CB = C / B;
  for (int64_t p = p0; p < p1; ++p)
    for (int64_t cb = 0; cb < CB; ++cb) std::memcpy(d + (cb * HW + p) * B, s + p * C + cb * B, B * sizeof(float));
}
}  // namespace

void nhwc_to_blocked(const float* src, float* dst, int64_t N, int64_t C, int64_t HW, int64_t B) {
  parallel_pixel_tiles(N, HW, N * C * HW, [&](int64_t n, int64_t p0, int64_t p1) {
    const float* s = src + n * HW * C;
    float* d = dst + n * HW * C;
    if (B == 8) copy_tile<8>(s, d, C, HW, p0, p1);
    else if (B == 16) copy_tile<16>(s, d, C, HW, p0, p1);
    else
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t c = 0; c < C; ++c) d[((c / B) * HW + p) * B + c % B] = s[p * C + c];
  });
}

int64_t dense_channel_block(const dnnl::memory::desc& md) {
  if (md.data_type() != dnnl::memory::data_type::f32 || md.dims().size() != 4) return 0;
  for (const int64_t b : {int64_t{8}, int64_t{16}}) {
    if (md.dims()[1] % b != 0) continue;
    const auto tag = b == 8 ? dnnl::memory::format_tag::nChw8c : dnnl::memory::format_tag::nChw16c;
    if (md == dnnl::memory::desc(md.dims(), dnnl::memory::data_type::f32, tag)) return b;
  }
  return 0;
}

}  // namespace crackseg::onednn
