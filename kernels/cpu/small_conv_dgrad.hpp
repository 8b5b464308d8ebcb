// Input gradient of a convolution with few input channels (1-7, kernel >= 2, K*K*I <= 64;
// e.g. Spiral-Net's modules 2-7, whose first convolution reads 1-6 maps): oneDNN 2.6 pads the
// input channels to a block of 16 there, so its backward-data costs what 16 channels would
// (2.7 ms per call at 255x255, batch 4, 1 thread, for 1 to 6 channels alike). Here, per block
// of input rows:
//   T[oh, ow, (kh*K + kw)*I + i] = sum_o dy[oh, ow, o] * W[o, i, kh, kw]    (a small GEMM,
//     every output pixel's K*K*I tap products in at most four AVX-512 registers)
//   dx[h, w, i] = sum over the taps (kh, kw) that reach (h, w) of T          (col2im, gather)
// with T computed per thread, for the rows the block needs (its halo recomputed), in the
// backend's shared scratchpad, so it stays in cache. Each dx element is summed in a fixed
// order (taps in (kh, kw) order; each T value over o in order), whatever the thread count:
// the same bits for 1 or 64 threads, and on AVX-512 or AVX2 (each T value is the same FMA chain).
// Without AVX2 (or with CRACKSEG_NO_AVX2=1) the layer keeps oneDNN's path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace crackseg::onednn {

struct SmallConvShape {
  int64_t N, I, H, W;   // input (N, I, H, W), nhwc
  int64_t O, Ho, Wo;    // output channels and size
  int64_t K, S, P;      // square kernel, stride, padding (dilation 1)
};

// Whether the kernel takes this convolution (fp32, dilation 1): I <= 7, K >= 2 (a 1x1
// convolution is a plain GEMM, which oneDNN does well), K*K*I <= 64, AVX-512 or AVX2 + FMA
// present and not switched off (dnnl_common.hpp; read at each call: layers decide at plan).
[[nodiscard]] bool small_conv_dgrad_fits(int64_t in_c, int64_t kernel);

class SmallConvDgrad {
 public:
  explicit SmallConvDgrad(const SmallConvShape& s);
  // W (O, I, K, K) plain -> the packed (O, NV*16) tap matrix; call when the weights change.
  void set_weights(const float* W);
  // Bytes of scratch run() needs (the T rows of one block per thread): the backend's shared
  // scratchpad, since layers run one at a time.
  [[nodiscard]] std::size_t scratch_bytes() const;
  // dx (N, H, W, I) nhwc, every element written, from dy (N, Ho, Wo, O) nhwc.
  void run(const float* dy, float* dx, float* scratch);

 private:
  SmallConvShape s_;
  int64_t NV_ = 0, rows_per_block_ = 0, t_rows_ = 0, threads_ = 1;
  bool avx512_ = false;  // else the AVX2 T rows (the same bits)
  Tensor wt_;  // (O, NV*16), zero beyond K*K*I
  std::vector<int32_t> woff_;  // (W, K): T offsets of the taps reaching input column w
  std::vector<uint8_t> wcnt_;  // (W): how many
  // Floats of one thread's T rows, plus room for the floats the gather's vector reads may run past.
  static constexpr int64_t kTSlack = 16;  // keeps each thread's rows 64-byte aligned
  [[nodiscard]] int64_t t_stride() const { return t_rows_ * s_.Wo * NV_ * 16 + kTSlack; }
};

}  // namespace crackseg::onednn
