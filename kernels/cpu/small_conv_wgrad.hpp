// Weight (and bias) gradient of a convolution with few input channels (1-7; Spiral-Net's
// module entries, the 3-channel first layers of the U-Net and the patch CNN), nhwc, fp32:
//   dW[o][i][kh][kw] += sum over (n, oh, ow) of dy[n, oh, ow, o] * x[n, S*oh + kh - P, S*ow + kw - P, i]
//   db[o] += sum of dy[..., o]
// Why our own: on CPUs where oneDNN 2.6 has no AVX-512 kernels, its jit:avx2 weight gradient
// ran these at 8-31 GFLOP/s (2 threads, AMD Zen 3: Spiral-Net's 1 -> 16 @255 at 2.3 ms a call,
// 8 GFLOP/s), and its blocked layout would pad the input channels to 8. Here each output row's
// patch matrix P[ow][tap] (tap = (kh*K + kw)*I + i, zeros where the window leaves the image,
// and a last tap of ones whose sums are the bias gradient) is multiplied by dy's row, the tap x
// output-channel sums of a block of rows kept in AVX2 registers: a small GEMM at the multiply
// rate.
//
// Determinism: rows are cut into fixed blocks of kRows output rows (not per thread); each
// block's sums are formed by one thread in a fixed order (rows, then ow), and the blocks are
// added in block order in double. The same bits for any thread count.
#pragma once
#include <cstddef>
#include <cstdint>

namespace crackseg::onednn {

struct SmallWgradShape {
  int64_t N = 0, I = 0, H = 0, W = 0;  // x (N, H, W, I) nhwc
  int64_t O = 0, Ho = 0, Wo = 0;       // dy (N, Ho, Wo, O) nhwc
  int64_t K = 1, S = 1, P = 0;         // square kernel, stride, padding (dilation 1)
};

// Whether the kernel takes this convolution: 1-7 input channels, O a multiple of 8 up to 64,
// K*K*I < 64, AVX2 + FMA present and not switched off (simd_switches.hpp; read at each call:
// layers decide at plan).
[[nodiscard]] bool small_conv_wgrad_fits(int64_t in_c, int64_t out_c, int64_t kernel);

// Floats of scratch small_conv_wgrad() needs with `threads` OpenMP threads.
[[nodiscard]] std::size_t small_conv_wgrad_scratch_floats(const SmallWgradShape& s, int threads);

// dW (O, I, K, K) += the weight gradient, db (O) += the bias gradient when not null; with at
// most `threads` threads (the count the scratch was sized for).
void small_conv_wgrad(const SmallWgradShape& s, const float* x, const float* dy, float* scratch, float* dW, float* db,
                      int threads);

}  // namespace crackseg::onednn
