// fp32 backward of a convolution's fused ReLU / LeakyReLU from its saved output, our own pass:
//   d = y > 0 ? g : g * alpha          (oneDNN's eltwise_relu_use_dst_for_bwd, the same bits)
// oneDNN 2.6's jit:avx2 eltwise backward ran it at ~13 GB/s (the patch CNN's 128x16x27x27:
// 1.4 ms a call, 7% of its step on an AVX2 Zen 3). The blocked form also writes d in oneDNN's
// nChw{B}c layout for the blocked weight gradient (conv_impl.hpp), which then needs no copy
// of its own: one read of y and g, two writes.
#pragma once
#include <cstdint>

namespace crackseg::onednn {

void relu_bwd_f32(const float* y, const float* g, float alpha, float* d, int64_t n);
// d (N, HW, C) nhwc and dblk (N, C/B, HW, B); C a multiple of B (8 or 16).
void relu_bwd_f32_blocked(const float* y, const float* g, float alpha, float* d, float* dblk, int64_t N, int64_t C,
                          int64_t HW, int64_t B);

}  // namespace crackseg::onednn
