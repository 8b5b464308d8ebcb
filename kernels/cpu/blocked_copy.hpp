// nhwc -> oneDNN's channel-blocked activation layout (nChw8c / nChw16c, "aBcd8b"), our own
// copy loop. oneDNN 2.6's `jit:uni` reorder for it ran at 3-8 GB/s on the U-Net's 400x400
// tensors on an AVX2 Zen 3 (2x32x400x400: 10 ms, ours 3.8 ms; measured with cold caches,
// 2 threads); the blocked weight gradient (conv_impl.hpp) and the transposed convolutions'
// phase weight gradients (conv_transpose_phases.cpp) copy their operands with it. A pure
// copy: the same bits as oneDNN's reorder for any thread count (test_blocked_copy).
#pragma once
#include <cstdint>

#include <dnnl.hpp>

namespace crackseg::onednn {

// dst (N, C/B, H*W, B) <- src (N, H*W, C); C a multiple of B.
void nhwc_to_blocked(const float* src, float* dst, int64_t N, int64_t C, int64_t HW, int64_t B);

// B when `md` is the dense f32 nChw{B}c layout (B = 8 or 16, C a multiple of B, no padding)
// of dims (N, C, H, W), else 0 (the caller keeps oneDNN's reorder).
[[nodiscard]] int64_t dense_channel_block(const dnnl::memory::desc& md);

}  // namespace crackseg::onednn
