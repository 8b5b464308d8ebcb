// Standalone prototype benchmark: convolution weight gradient (nhwc, fp32) by a register-
// blocked AVX-512 kernel against oneDNN 2.6's convolution_backward_weights, one thread, on
// the U-Net's, Spiral-Net's and the patch CNN's shapes. Outcome (seventh session,
// docs/PERFORMANCE.md): oneDNN's runs at the sgemm rate and ours is not faster, so crackseg
// keeps oneDNN's; this stays as the evidence and as a harness for the next attempt.
//   g++ -O3 -std=c++20 -fopenmp bench/onednn/wgrad_bench.cpp -ldnnl -o /tmp/wgrad && OMP_NUM_THREADS=1 /tmp/wgrad
#include <dnnl.hpp>
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

static double med(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }

struct Shape { int n, ic, oc, h, w, k, s, p; };

// acc[i][j] += sum over npx pixels of x[i] * dy[16j..16j+15]
template <int I, int J>
__attribute__((target("avx512f"), noinline)) void micro(const float* x, int64_t xstep, const float* dy, int64_t dystep,
                                                        int64_t npx, float* out) {
  __m512 acc[I][J];
  for (int i = 0; i < I; ++i)
    for (int j = 0; j < J; ++j) acc[i][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < npx; ++p) {
    __m512 d[J];
    for (int j = 0; j < J; ++j) d[j] = _mm512_loadu_ps(dy + p * dystep + 16 * j);
    for (int i = 0; i < I; ++i) {
      const __m512 b = _mm512_set1_ps(x[p * xstep + i]);
      for (int j = 0; j < J; ++j) acc[i][j] = _mm512_fmadd_ps(b, d[j], acc[i][j]);
    }
  }
  for (int i = 0; i < I; ++i)
    for (int j = 0; j < J; ++j) _mm512_storeu_ps(out + (i * J + j) * 16, acc[i][j]);
}

template <int I, int J>
void wgrad(const Shape& s, int OH, int OW, const float* x, const float* dy, std::vector<double>& dw /*[ky][kx][ic][oc]*/) {
  std::fill(dw.begin(), dw.end(), 0.0);
  const int icb = s.ic / I, ocb = s.oc / (16 * J);
  float part[I * J * 16];
  for (int n = 0; n < s.n; ++n)
    for (int oy = 0; oy < OH; ++oy)
      for (int ky = 0; ky < s.k; ++ky) {
        const int iy = oy * s.s + ky - s.p;
        if (iy < 0 || iy >= s.h) continue;
        for (int kx = 0; kx < s.k; ++kx) {
          // ox with 0 <= ox*s + kx - p < w
          int lo = 0;
          while (lo < OW && lo * s.s + kx - s.p < 0) ++lo;
          int hi = OW;
          while (hi > lo && (hi - 1) * s.s + kx - s.p >= s.w) --hi;
          if (hi <= lo) continue;
          const float* xr = x + ((int64_t(n) * s.h + iy) * s.w + (lo * s.s + kx - s.p)) * s.ic;
          const float* dr = dy + ((int64_t(n) * OH + oy) * OW + lo) * s.oc;
          for (int ib = 0; ib < icb; ++ib)
            for (int jb = 0; jb < ocb; ++jb) {
              micro<I, J>(xr + ib * I, int64_t(s.s) * s.ic, dr + jb * 16 * J, s.oc, hi - lo, part);
              double* o = dw.data() + ((int64_t(ky) * s.k + kx) * s.ic + ib * I) * s.oc + jb * 16 * J;
              for (int i = 0; i < I; ++i)
                for (int t = 0; t < 16 * J; ++t) o[int64_t(i) * s.oc + t] += part[i * 16 * J + t];
            }
        }
      }
}

int main() {
  engine eng(engine::kind::cpu, 0);
  stream st(eng);
  const Shape shapes[] = {{4, 16, 16, 400, 400, 3, 1, 1}, {4, 32, 32, 200, 200, 3, 1, 1}, {4, 64, 64, 100, 100, 3, 1, 1},
                          {4, 128, 128, 50, 50, 3, 1, 1}, {4, 16, 32, 127, 127, 3, 2, 0}, {4, 32, 64, 63, 63, 3, 2, 0},
                          {128, 16, 16, 27, 27, 3, 1, 1}};
  for (const Shape& s : shapes) {
    const int OH = (s.h + 2 * s.p - s.k) / s.s + 1, OW = (s.w + 2 * s.p - s.k) / s.s + 1;
    std::vector<float> x(size_t(s.n) * s.h * s.w * s.ic), dy(size_t(s.n) * OH * OW * s.oc);
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.001f * i);
    for (size_t i = 0; i < dy.size(); ++i) dy[i] = std::cos(0.0007f * i) * 1e-3f;
    memory::dims src_d = {s.n, s.ic, s.h, s.w}, dst_d = {s.n, s.oc, OH, OW}, w_d = {s.oc, s.ic, s.k, s.k};
    auto src_md = memory::desc(src_d, dt::f32, tag::nhwc), dst_md = memory::desc(dst_d, dt::f32, tag::nhwc);
    auto w_any = memory::desc(w_d, dt::f32, tag::any);
    memory::dims str = {s.s, s.s}, pl = {s.p, s.p};
    memory::dims pr = {(OH - 1) * s.s + s.k - s.h - s.p, (OW - 1) * s.s + s.k - s.w - s.p};
    convolution_forward::desc fd(prop_kind::forward_training, algorithm::convolution_direct, src_md, w_any, dst_md, str, pl, pr);
    convolution_forward::primitive_desc fpd(fd, eng);
    convolution_backward_weights::desc bd(algorithm::convolution_direct, src_md, w_any, dst_md, str, pl, pr);
    convolution_backward_weights::primitive_desc bpd(bd, eng, fpd);
    memory src(src_md, eng, x.data()), ddst(dst_md, eng, dy.data()), dw(bpd.diff_weights_desc(), eng);
    auto prim = convolution_backward_weights(bpd);
    memory plain(memory::desc(w_d, dt::f32, tag::oihw), eng);
    std::vector<double> mine(size_t(s.k) * s.k * s.ic * s.oc);
    const int J = s.oc % 64 == 0 ? 4 : s.oc % 32 == 0 ? 2 : 1;
    auto run_mine = [&] {
      if (J == 4) wgrad<4, 4>(s, OH, OW, x.data(), dy.data(), mine);
      else if (J == 2) wgrad<8, 2>(s, OH, OW, x.data(), dy.data(), mine);
      else wgrad<8, 1>(s, OH, OW, x.data(), dy.data(), mine);
    };
    std::vector<double> ta, tb;
    for (int r = 0; r < 7; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      prim.execute(st, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dw}});
      st.wait();
      auto t1 = std::chrono::steady_clock::now();
      run_mine();
      auto t2 = std::chrono::steady_clock::now();
      if (r) ta.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count()),
          tb.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    reorder(dw, plain).execute(st, dw, plain);
    st.wait();
    const float* ref = static_cast<float*>(plain.get_data_handle());
    double maxd = 0, maxr = 0;
    for (int o = 0; o < s.oc; ++o)
      for (int i = 0; i < s.ic; ++i)
        for (int t = 0; t < s.k * s.k; ++t) {
          const double a = ref[(size_t(o) * s.ic + i) * s.k * s.k + t], b = mine[(size_t(t) * s.ic + i) * s.oc + o];
          maxd = std::max(maxd, std::fabs(a - b)), maxr = std::max(maxr, std::fabs(a));
        }
    const double gf = 2.0 * s.n * OH * OW * s.oc * s.ic * s.k * s.k / 1e9;
    std::printf("ic%3d oc%3d %3dx%3d k%d s%d n%3d: onednn %7.2f ms (%5.1f GFLOP/s) mine %7.2f ms (%5.1f)  maxdiff/max %.1e  %s\n",
                s.ic, s.oc, s.h, s.w, s.k, s.s, s.n, med(ta), gf / med(ta) * 1e3, med(tb), gf / med(tb) * 1e3, maxd / maxr,
                bpd.impl_info_str());
  }
}
