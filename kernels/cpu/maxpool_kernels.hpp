// Max pooling over nhwc tensors, our own loops (oneDNN 2.6's pooling_v2 ran the patch CNN's
// 2x2 pools at 2.6 GB/s on an AVX2 Zen 3: 7.5 ms of a 47 ms step). The rule is the reference
// backend's: the first maximum in window order (kh, kw) wins, padding never wins. Forward
// keeps the winner's window position (kh*K + kw) per output element, one byte each; backward
// sends each output gradient to its winner: where windows do not overlap (K == S, the U-Net's
// and the patch CNN's pools) every input element is written once (0 + dy or 0), otherwise
// per image in output order. Bits do not depend on the thread count.
#pragma once
#include <cstdint>

namespace crackseg::onednn {

struct PoolShape {
  int64_t N, H, W, C;  // input (N, H, W, C) nhwc
  int64_t Ho, Wo;      // output size
  int64_t K, S, P;     // square window, stride, padding (top/left; the rest as the output size needs)
};

// Whether the loops take this window (the winner fits a byte).
[[nodiscard]] inline bool own_maxpool_fits(int64_t kernel) { return kernel >= 1 && kernel * kernel < 256; }  // 0xFF: no winner
void maxpool_forward(const PoolShape& s, const float* x, float* y, uint8_t* winner);
// dx (N, H, W, C): every element written.
void maxpool_backward(const PoolShape& s, const float* dy, const uint8_t* winner, float* dx);

}  // namespace crackseg::onednn
