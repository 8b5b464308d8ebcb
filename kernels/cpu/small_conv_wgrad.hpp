// Weight (and bias) gradient of a convolution on AVX2 + FMA, nhwc, fp32, for CPUs where
// oneDNN 2.6 has no AVX-512 kernels:
//   dW[o][i][kh][kw] += sum over (n, oh, ow) of dy[n, oh, ow, o] * x[n, S*oh + kh - P, S*ow + kw - P, i]
//   db[o] += sum of dy[..., o]
// Why our own: oneDNN's jit:avx2 weight gradient ran the few-input-channel layers (Spiral-Net's
// module entries, the 3-channel first layers) at 8-31 GFLOP/s (2 threads, AMD Zen 3: 1 -> 16
// @255 at 2.3 ms a call), its blocked layout would pad their channels to 8; and on 16-32-channel
// layers with a small weight (taps x O up to 32K floats: the patch CNN's 16 -> 16 and 32 -> 32,
// Spiral-Net's 16 -> 32 and 32 -> 64) its blocked kernel plus the two reorders to nChw8c lost
// to this one in the network (patch CNN step 29.4 -> 24.4 ms; past 32K, Spiral-Net's 64 -> 128
// and 128 -> 128, oneDNN won). Here each output row's window rows are copied once per block
// with the padding as zeros (a slab), and for a slice of 16 output channels and a group of
// taps (tap = (kh*K + kw)*I + i, 12 AVX2 accumulators) the sums over a pass of rows of
// x_tap * dy are a small GEMM at the multiply rate; passes of >= 64 pixels keep dy's slice
// and the window rows in L1 across the tap groups.
//
// Determinism: the output rows are cut into fixed blocks (R rows of one image, or M whole
// images; R and M follow from the shape only, never the threads); each block's sums are one
// FMA chain per element over its rows and ow in order, formed by one thread; the blocks are
// added in block order in double. The same bits for any thread count.
#pragma once
#include <cstddef>
#include <cstdint>

namespace crackseg::onednn {

struct SmallWgradShape {
  int64_t N = 0, I = 0, H = 0, W = 0;  // x (N, H, W, I) nhwc
  int64_t O = 0, Ho = 0, Wo = 0;       // dy (N, Ho, Wo, O) nhwc
  int64_t Kh = 1, Kw = 1, S = 1;       // kernel, stride on both axes (dilation 1)
  int64_t Ph = 0, Pw = 0;              // top / left padding (the bottom and right follow from Ho, Wo)
};

// Whether the kernel takes this convolution: O a multiple of 8 up to 64 (not 40 or 56),
// (Kh*Kw*I + 1) * O <= 32K, AVX2 + FMA present and not switched off (simd_switches.hpp; read at each
// call: layers decide at plan).
[[nodiscard]] bool small_conv_wgrad_fits(int64_t in_c, int64_t out_c, int64_t kh, int64_t kw);
[[nodiscard]] inline bool small_conv_wgrad_fits(int64_t in_c, int64_t out_c, int64_t kernel) {
  return small_conv_wgrad_fits(in_c, out_c, kernel, kernel);
}

// How a shape is cut into blocks (for tests: both regimes must be covered).
struct SmallWgradBlocks {
  int64_t R = 0, M = 0, blocks = 0;  // output rows per block, images per block, blocks
};
[[nodiscard]] SmallWgradBlocks small_conv_wgrad_blocks(const SmallWgradShape& s);

// Floats of scratch small_conv_wgrad() needs with `threads` OpenMP threads.
[[nodiscard]] std::size_t small_conv_wgrad_scratch_floats(const SmallWgradShape& s, int threads);

// dW (O, I, Kh, Kw) += the weight gradient, db (O) += the bias gradient when not null; with at
// most `threads` threads (the count the scratch was sized for).
void small_conv_wgrad(const SmallWgradShape& s, const float* x, const float* dy, float* scratch, float* dW, float* db,
                      int threads);

}  // namespace crackseg::onednn
