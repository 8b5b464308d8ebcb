// fp32 -> bf16 conversion for bf16 convolutions (see to_bf16.hpp).
#include "kernels/cpu/to_bf16.hpp"

#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/dnnl_check.hpp"
#include "kernels/cpu/dnnl_common.hpp"
#include "kernels/cpu/parallel_tiles.hpp"

namespace crackseg::onednn {
namespace {

// GCC 12's AVX-512 intrinsic headers trip -Wuninitialized (their _mm512_undefined_*
// placeholders); the warning is about the headers, not this code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void convert_chunk(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(s + i + 16), _mm512_loadu_ps(s + i));
    _mm512_storeu_si512(d + i, reinterpret_cast<const __m512i&>(v));
  }
  for (; i < n; i += 16) {
    const auto m = static_cast<__mmask16>(n - i >= 16 ? 0xffffu : (1u << (n - i)) - 1u);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, s + i));
    _mm256_mask_storeu_epi16(d + i, m, reinterpret_cast<const __m256i&>(v));
  }
}

// d = bf16(y > 0 ? g : g * alpha), 16 at a time: the select is a mask blend (no branch), the
// multiply the one oneDNN's relu backward does.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void relu_bwd_chunk(const float* y, const float* g,
                                                                                   float alpha, uint16_t* d,
                                                                                   int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const auto m = static_cast<__mmask16>(n - i >= 16 ? 0xffffu : (1u << (n - i)) - 1u);
    const __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
    const __mmask16 pos = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, y + i), zero, _CMP_GT_OQ);
    const __m512 r = _mm512_mask_blend_ps(pos, _mm512_mul_ps(gv, a), gv);
    const __m256bh v = _mm512_cvtneps_pbh(r);
    _mm256_mask_storeu_epi16(d + i, m, reinterpret_cast<const __m256i&>(v));
  }
}
#pragma GCC diagnostic pop

// Dense (no inner blocks, no padding) with these strides.
bool dense_same_layout(const dnnl::memory::desc& a, const dnnl::memory::desc& b) {
  const auto& x = a.data;
  const auto& y = b.data;
  if (x.format_kind != dnnl_blocked || y.format_kind != dnnl_blocked || x.ndims != y.ndims) return false;
  if (x.format_desc.blocking.inner_nblks != 0 || y.format_desc.blocking.inner_nblks != 0) return false;
  if (x.offset0 != 0 || y.offset0 != 0) return false;
  int64_t n = 1;
  for (int i = 0; i < x.ndims; ++i) {
    if (x.dims[i] != y.dims[i] || x.padded_dims[i] != x.dims[i] || y.padded_dims[i] != y.dims[i] ||
        x.format_desc.blocking.strides[i] != y.format_desc.blocking.strides[i])
      return false;
    n *= x.dims[i];
  }
  return static_cast<int64_t>(a.get_size()) == 4 * n && static_cast<int64_t>(b.get_size()) == 2 * n;
}

}  // namespace

bool avx512bf16_available() {
  return avx512_enabled() && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw");
}

void f32_to_bf16_serial(const float* src, uint16_t* dst, int64_t n) { convert_chunk(src, dst, n); }

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  parallel_chunks(n, [&](int64_t b, int64_t k) { convert_chunk(src + b, dst + b, k); });
}

void relu_bwd_to_bf16(const float* y, const float* g, float alpha, uint16_t* dst, int64_t n) {
  parallel_chunks(n, [&](int64_t b, int64_t k) { relu_bwd_chunk(y + b, g + b, alpha, dst + b, k); });
}

void ToBf16::plan(const dnnl::memory& from, const dnnl::memory& to) {
  from_ = from, to_ = to;
  const auto fm = from.get_desc(), tm = to.get_desc();
  own_ = fm.data_type() == dnnl::memory::data_type::f32 && tm.data_type() == dnnl::memory::data_type::bf16 &&
         dense_same_layout(fm, tm) && avx512bf16_available();
  n_ = static_cast<int64_t>(fm.get_size() / 4);
  if (!own_) {
    reorder_ = make_primitive<dnnl::reorder>(dnnl::reorder::primitive_desc(from, to));
    args_ = {{DNNL_ARG_FROM, from_}, {DNNL_ARG_TO, to_}};
  }
}

void ToBf16::run(dnnl::stream& s) {
  if (own_) {
    CRACKSEG_DNNL_CALL(s.wait());  // the source may be a primitive's output (in-order CPU stream: a no-op)
    return f32_to_bf16(static_cast<const float*>(from_.get_data_handle()), static_cast<uint16_t*>(to_.get_data_handle()),
                       n_);
  }
  CRACKSEG_DNNL_CALL(reorder_.execute(s, args_));
}

}  // namespace crackseg::onednn
