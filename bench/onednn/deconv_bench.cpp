// Standalone oneDNN microbenchmark (issue 15 item 5; docs/PERFORMANCE.md): Spiral-Net's
// transposed convs on one oneDNN build or another. Not part of the CMake build:
//   g++ -O2 -std=c++17 bench/onednn/deconv_bench.cpp -ldnnl -o deconv26             # Debian's 2.6
//   g++ -O2 -std=c++17 -I$D/include bench/onednn/deconv_bench.cpp -L$L -ldnnl -Wl,-rpath,$L -o deconv32
//     ($D, $L: the data/ folders of the onednn-devel-cpu-gomp and onednn-cpu-gomp wheels, oneDNN 3.2)
//   OMP_NUM_THREADS=1 ./deconv26; OMP_NUM_THREADS=1 ./deconv32   # alternate, repeat
// Prints, per shape (3x3 stride 2, nhwc, batch 4, weights format any), the median ms of 10 calls
// of forward, backward-data and backward-weights and the implementation oneDNN chose.
#include <dnnl.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>
using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;
static double med(std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; }
template <class F> double time_it(F f, stream& s) {
  std::vector<double> t;
  for (int i = 0; i < 12; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f(); s.wait();
    if (i >= 2) t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return med(t);
}
int main() {
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  struct Sh { int ci, co, h; } shapes[] = {{16, 1, 127}, {32, 16, 63}, {64, 32, 31}};
  for (auto sh : shapes) {
    const int n = 4, oh = (sh.h - 1) * 2 + 3;
    memory::dims src_d = {n, sh.ci, sh.h, sh.h}, dst_d = {n, sh.co, oh, oh}, w_d = {sh.co, sh.ci, 3, 3}, b_d = {sh.co};
    memory::dims st = {2, 2}, pad = {0, 0};
    auto src_md = memory::desc(src_d, dt::f32, tag::nhwc), dst_md = memory::desc(dst_d, dt::f32, tag::nhwc);
    auto w_any = memory::desc(w_d, dt::f32, tag::any), b_md = memory::desc(b_d, dt::f32, tag::a);
#if DNNL_VERSION_MAJOR >= 3
    auto fpd = deconvolution_forward::primitive_desc(eng, prop_kind::forward_training, algorithm::deconvolution_direct,
                                                     src_md, w_any, b_md, dst_md, st, pad, pad);
    auto dpd = deconvolution_backward_data::primitive_desc(eng, algorithm::deconvolution_direct, src_md, w_any, dst_md,
                                                           st, pad, pad, fpd);
    auto wpd = deconvolution_backward_weights::primitive_desc(eng, algorithm::deconvolution_direct, src_md, w_any, b_md,
                                                              dst_md, st, pad, pad, fpd);
#else
    auto fpd = deconvolution_forward::primitive_desc(
        deconvolution_forward::desc(prop_kind::forward_training, algorithm::deconvolution_direct, src_md, w_any, b_md,
                                    dst_md, st, pad, pad), eng);
    auto dpd = deconvolution_backward_data::primitive_desc(
        deconvolution_backward_data::desc(algorithm::deconvolution_direct, src_md, w_any, dst_md, st, pad, pad), eng, fpd);
    auto wpd = deconvolution_backward_weights::primitive_desc(
        deconvolution_backward_weights::desc(algorithm::deconvolution_direct, src_md, w_any, b_md, dst_md, st, pad, pad),
        eng, fpd);
#endif
    memory src(src_md, eng), dst(dst_md, eng), dsrc(src_md, eng), ddst(dst_md, eng), b(b_md, eng), db(b_md, eng);
    memory w(fpd.weights_desc(), eng), wd(dpd.weights_desc(), eng), dw(wpd.diff_weights_desc(), eng);
    for (auto* m : {&src, &ddst, &w, &wd, &b}) {
      float* p = static_cast<float*>(m->get_data_handle());
      for (size_t i = 0; i < m->get_desc().get_size() / 4; ++i) p[i] = 0.001f * static_cast<float>(i % 997);
    }
    deconvolution_forward f(fpd);
    deconvolution_backward_data d(dpd);
    deconvolution_backward_weights wb(wpd);
    double tf = time_it([&] { f.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}}); }, s);
    double td = time_it([&] { d.execute(s, {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wd}, {DNNL_ARG_DIFF_SRC, dsrc}}); }, s);
    double tw = time_it([&] { wb.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_DIFF_BIAS, db}}); }, s);
    std::printf("oneDNN %d.%d convT %d->%d %d->%d: fwd %.2f ms [%s] bwd_data %.2f ms [%s] bwd_w %.2f ms [%s]\n",
                dnnl_version()->major, dnnl_version()->minor, sh.ci, sh.co, sh.h, oh, tf, fpd.impl_info_str(), td,
                dpd.impl_info_str(), tw, wpd.impl_info_str());
  }
}
