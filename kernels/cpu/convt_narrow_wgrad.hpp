// Weight and bias gradient of a transposed convolution with few output channels (the narrow
// path of conv_transpose_phases.cpp: Spiral-Net's 16 -> 1 module outputs), nhwc, fp32 sums:
//   dW[i][o][kh][kw] += sum over (n, ih, iw) of x[n, ih, iw, i] * g[n, S*ih + kh - pad, S*iw + kw - pad, o]
// (taps landing outside g's Ho x Wo contribute nothing), db[o] += sum of g[..., o].
//
// Why our own: oneDNN 2.6 runs this as its strided jit:avx512_core deconvolution
// backward-weights, ~0.5 ms per call at one thread and 0.44 at two for Spiral-Net's 16 -> 1
// layers (4 x 127 x 127 x 16 inputs, 9.3M multiply-adds: a tenth of the machine's rate). Here
// each input row keeps its K*K*O*I sums in registers (one vector per (kh, kw, o, 16 inputs)),
// so the pass streams x and g once at the multiply rate.
//
// Determinism: each input row's partial sums are formed by one thread in a fixed order (kh,
// kw, o, iw), then added over the rows in row order in double; the bias sums each output row
// in float, then the rows in order in double. Same bits for any thread count.
#pragma once
#include <cstddef>
#include <cstdint>

namespace crackseg::onednn {

struct NarrowWgradShape {
  int64_t N = 0, H = 0, W = 0, I = 0;  // x: (N, H, W, I)
  int64_t Ho = 0, Wo = 0, O = 0;       // g: (N, Ho, Wo, O)
  int64_t K = 0, S = 1, pad = 0;
};

// Scratch (floats) run() needs: one partial-sum block per input row and a sum per output row.
[[nodiscard]] std::size_t narrow_wgrad_scratch_floats(const NarrowWgradShape& s);

// dW (I, O, K, K) += the weight gradient; db (O) += the bias gradient when not null. x and g
// are fp32, or bf16 bit patterns (uint16_t) where the layer keeps bf16 copies.
void narrow_convt_wgrad(const NarrowWgradShape& s, const float* x, const float* g, float* scratch, float* dW,
                        float* db);
void narrow_convt_wgrad(const NarrowWgradShape& s, const uint16_t* x, const uint16_t* g, float* scratch, float* dW,
                        float* db);

}  // namespace crackseg::onednn
