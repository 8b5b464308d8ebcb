// bf16 convolution weight (and bias) gradient on AMX tiles, nhwc, for CPUs with AMX-BF16:
//   dW[o][i][kh][kw] += sum over (n, oh, ow) of dy[n, oh, ow, o] * x[n, S*oh + kh - Ph, S*ow + kw - Pw, i]
//   db[o] += sum of dy[..., o]
// x and dy are bf16 (the layer's rounded copies), the sums fp32 (tdpbf16ps: the bf16 products
// are exact in fp32, accumulated in fp32 as oneDNN's bf16 kernels do).
//
// Why our own: oneDNN 2.6's AMX weight-gradient kernel (`jit:avx512_core_amx_bf16`) writes
// tiles outside its buffers for 400-wide stride-1 3x3 convolutions (docs/DEBUGGING.md), so
// every bf16 weight gradient went to its AVX512-BF16 kernel, slower there than fp32's
// (334 vs 237 ms per U-Net step): bf16 gained nothing on AMX CPUs.
//
// As a GEMM per tap (kh, kw) and 16-channel blocks: C[i][o] (16x16 fp32 tile) += A[i][p] *
// B[p][o] over output pixels p, 32 pixels per tdpbf16ps. A is x transposed, [i][pixel], so
// that a tap's shifted window is a plain offset (xT below); B is dy with pairs of neighbouring
// pixels interleaved per channel (the VNNI layout tdpbf16ps wants, dyV below). Work goes in
// chunks of R output rows of one image (R from the shape: the chunk's xT and dyV near 384 KB,
// in L2); per chunk, xT and dyV are built, then every tile job (up to 4 accumulator tiles: 2
// taps x 2 output blocks, or 4 taps x 1) runs over all the chunk's pixels, its accumulators
// loaded from and stored to the thread's fp32 partial sums. Output rows are padded to a
// multiple of 32 pixels with zeros. Chunks go to threads in fixed contiguous ranges; the
// partial sums are added in thread order: the same bits for the same thread count (bf16 runs
// are not part of bitwise mode).
//
// Every buffer the tiles read or write is sized for whole tiles (no tile load or store runs
// past an end: checked under CRACKSEG_GUARD_PAGES by test_amx_wgrad).
#pragma once
#include <cstddef>
#include <cstdint>

namespace crackseg::onednn {

struct AmxWgradShape {
  int64_t N = 0, I = 0, H = 0, W = 0;  // x (N, H, W, I) nhwc bf16
  int64_t O = 0, Ho = 0, Wo = 0;       // dy (N, Ho, Wo, O) nhwc bf16
  int64_t Kh = 1, Kw = 1, S = 1;       // kernel, stride on both axes (dilation 1)
  int64_t Ph = 0, Pw = 0;              // top / left padding (bottom and right follow from Ho, Wo)
};

// The CPU has AMX-TILE and AMX-BF16, Linux granted this process the tile state, and
// CRACKSEG_NO_AMX=1 is not set (read at each call; layers decide at plan, and also follow
// oneDNN's ISA limit: dnnl_common.hpp onednn_allows_amx).
[[nodiscard]] bool amx_bf16_available();

// Whether the kernel takes this shape: stride 1 or 2, kernel up to 7x7, padding below the
// kernel, and amx_bf16_available(). Any channel counts: I and O are padded to multiples of 16
// with zeros inside the kernel (its copies), so few channels cost as much as 16.
[[nodiscard]] bool amx_wgrad_fits(const AmxWgradShape& s);

// Whether the layers should take it for this shape: output rows at least kAmxWgradMinWo
// pixels wide. Rows are padded to the tiles' 32 pixels, and every thread zeroes and adds a
// partial sum of the whole weight gradient, so on Spiral-Net's innermost layers (1-4 pixels
// wide, 128 x 128 x 3 x 3 weights) oneDNN's AVX512-BF16 kernel ran faster: backward of the
// 3 -> 1 and 7 -> 3 convolutions 0.52 / 0.56 ms against 0.27 / 0.39, of the transposed 1 -> 3
// and 3 -> 7 ones 0.81 / 1.03 against 0.61 / 0.84; at 7 wide ours won (0.72 against 0.81
// ms) and at 8 it was even (AMX Xeon, fifteenth session, docs/PERFORMANCE.md).
inline constexpr int64_t kAmxWgradMinWo = 6;
[[nodiscard]] inline bool amx_wgrad_pays(const AmxWgradShape& s) { return s.Wo >= kAmxWgradMinWo; }

// Bytes of scratch amx_wgrad() needs with `threads` OpenMP threads (64-byte aligned base).
[[nodiscard]] std::size_t amx_wgrad_scratch_bytes(const AmxWgradShape& s, int threads);

// Output rows per chunk (tests use it to cover one and several chunks per image).
[[nodiscard]] int64_t amx_wgrad_chunk_rows(const AmxWgradShape& s);

// dW (O, I, Kh, Kw) += the weight gradient, db (O) += the bias gradient when not null; x and
// dy bf16 bit patterns; with at most `threads` threads (the count the scratch was sized for).
// Throws Error naming the shape where amx_wgrad_fits() is false.
void amx_wgrad(const AmxWgradShape& s, const uint16_t* x, const uint16_t* dy, void* scratch, float* dW, float* db,
               int threads);

}  // namespace crackseg::onednn
