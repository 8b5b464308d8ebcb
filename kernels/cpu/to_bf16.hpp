// fp32 -> bf16 copies of a bf16 convolution's operands (its input in forward, its output
// gradient in backward: conv_impl.hpp, conv_transpose_phases.cpp). oneDNN 2.6's reorder does
// this at ~14 GB/s for the U-Net's 400x400x16 activations (4.3 ms each, 2 threads; about 14%
// of a bf16 U-Net step went to these). Where both sides are dense tensors of one layout and
// the CPU has AVX512-BF16, our own loop converts instead (vcvtne2ps2bf16, the instruction
// oneDNN's own bf16 conversion uses: round to nearest even, same bits); else the reorder runs.
#pragma once
#include <dnnl.hpp>

#include <cstdint>
#include <unordered_map>

namespace crackseg::onednn {

// dst[i] = bf16(src[i]) for i < n, OpenMP over fixed chunks. Needs avx512bf16_available().
void f32_to_bf16(const float* src, uint16_t* dst, int64_t n);
// The same on the calling thread only (inside a caller's parallel loop: batchnorm writing a
// bf16 activation row by row).
void f32_to_bf16_serial(const float* src, uint16_t* dst, int64_t n);
// dst[i] = bf16(y[i] > 0 ? g[i] : g[i] * alpha): a fused ReLU / LeakyReLU's backward from
// its output y (oneDNN's eltwise_relu_use_dst_for_bwd: the same select and multiply) and
// the rounding of the result, in one pass (a bf16 convolution with a fused activation reads
// only the rounded gradient). OpenMP over fixed chunks. Needs avx512bf16_available().
void relu_bwd_to_bf16(const float* y, const float* g, float alpha, uint16_t* dst, int64_t n);
// The CPU has AVX512-BF16 (and CRACKSEG_NO_AVX512 is not set).
[[nodiscard]] bool avx512bf16_available();

class ToBf16 {
 public:
  // `from` (f32) and `to` (bf16): the memories whose handles run() converts between; their
  // data handles may change between calls.
  void plan(const dnnl::memory& from, const dnnl::memory& to);
  void run(dnnl::stream& s);
  [[nodiscard]] bool own() const { return own_; }

 private:
  dnnl::memory from_, to_;
  dnnl::primitive reorder_;
  std::unordered_map<int, dnnl::memory> args_;
  bool own_ = false;
  int64_t n_ = 0;
};

}  // namespace crackseg::onednn
