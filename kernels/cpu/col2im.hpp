// col2im over nhwc tensors, shared by the transposed conv's narrow-output forward
// (conv_transpose_phases.cpp) and the conv's narrow-input backward-data (conv_impl.hpp): both
// are "scatter each input pixel's K*K tap products into a stride-S output".
//   y[n, S*ih + kh - pad, S*iw + kw - pad, c] = bias[c] + sum of T[n, ih, iw, (kh*K + kw)*C + c]
// over the taps that land inside y (Ho x Wo), then y = act(y) when act (ReLU / LeakyReLU with
// slope alpha). T is (N, H, W, K*K*C) nhwc. Each output row sums its taps in the order
// (kh, kw, iw), whatever the thread count (threads split output rows).
#pragma once
#include <algorithm>
#include <cstdint>

namespace crackseg::onednn {

// Adds into one output row yr (Wo pixels of C channels) the tap products of every input row
// reaching output row oh: yr[S*iw + kw - pad, c] += T_row(ih)[iw*P + (kh*K + kw)*C + c], in
// the order (kh, kw, iw). T_row(ih) points at input row ih of T (H rows of W pixels), P is T's
// pixel stride (K*K*C, or more where T is padded). CC > 0: C known at compile time, so the
// per-pixel adds unroll. Also the few-input-channel conv input gradient's gather
// (small_conv_dgrad.cpp).
template <int CC = 0, class RowOf>
inline void col2im_add_row(RowOf&& T_row, int64_t H, int64_t W, int64_t P, int64_t K, int64_t S, int64_t pad,
                           int64_t C, float* yr, int64_t oh, int64_t Wo) {
  const int64_t cn = CC > 0 ? CC : C;
  for (int64_t kh = 0; kh < K; ++kh) {
    const int64_t t = oh + pad - kh;  // = S*ih
    if (t < 0 || t % S != 0 || t / S >= H) continue;
    const float* Tr = T_row(t / S);
    for (int64_t kw = 0; kw < K; ++kw) {
      // ow = S*iw + kw - pad in [0, Wo), iw in [0, W)
      const int64_t last = Wo - 1 + pad - kw;  // S*iw <= last
      if (last < 0) continue;
      const int64_t iw0 = pad - kw > 0 ? (pad - kw + S - 1) / S : 0, iw1 = std::min<int64_t>(W, last / S + 1);
      const float* Tk = Tr + (kh * K + kw) * cn;
      for (int64_t iw = iw0; iw < iw1; ++iw) {
        float* d = yr + (S * iw + kw - pad) * cn;
        const float* v = Tk + iw * P;
        for (int64_t c = 0; c < cn; ++c) d[c] += v[c];
      }
    }
  }
}

inline void col2im_nhwc(const float* T, int64_t N, int64_t H, int64_t W, int64_t K, int64_t S, int64_t pad, int64_t C,
                        const float* bias, float* y, int64_t Ho, int64_t Wo, bool act = false, float alpha = 0.0f) {
  const int64_t rows = N * Ho, KKC = K * K * C;
#pragma omp parallel for schedule(static) if (rows * Wo * C > 16384)
  for (int64_t row = 0; row < rows; ++row) {
    const int64_t n = row / Ho, oh = row % Ho;
    float* yr = y + row * Wo * C;
    for (int64_t ow = 0; ow < Wo; ++ow)
      for (int64_t c = 0; c < C; ++c) yr[ow * C + c] = bias ? bias[c] : 0.0f;
    const auto T_row = [&](int64_t ih) { return T + (n * H + ih) * W * KKC; };
    if (C == 1)
      col2im_add_row<1>(T_row, H, W, KKC, K, S, pad, C, yr, oh, Wo);
    else
      col2im_add_row(T_row, H, W, KKC, K, S, pad, C, yr, oh, Wo);
    if (act)
      for (int64_t k = 0; k < Wo * C; ++k) yr[k] = yr[k] > 0.0f ? yr[k] : alpha * yr[k];
  }
}

}  // namespace crackseg::onednn
