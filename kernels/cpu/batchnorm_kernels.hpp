// Batchnorm over nhwc activations with an optional fused ReLU / LeakyReLU (CPU backend).
//
// Why our own and not oneDNN 2.6's: its training batchnorm cannot fuse LeakyReLU (only ReLU,
// with a mask workspace it writes in forward), so BN -> activation was two passes forward and
// two backward over every U-Net and Spiral-Net block output; and its 1-channel path
// (Spiral-Net's module outputs) runs ~3x slower per element than its vectorised one.
// Here: forward = one statistics pass (each row of W pixels read twice while it is in cache)
// + one apply pass writing act(x * a + b); backward = one sums pass + one apply pass, each
// reading x and dy only: the activation's mask (pre-activation v > 0) is recomputed from x
// with forward's constants and forward's expression, so the activation costs no pass of its
// own and the saved output is never read (12 -> 8 and 16 -> 12 bytes per element; the
// output may be overwritten in place by whatever follows). A dropout that follows (the
// U-Net's unit: conv, BN, LeakyReLU, dropout) can be fused too: its mask (drawn beforehand,
// 1 bit per element, dropout_tiles.hpp) is read in place by the same passes, so dropout costs
// no pass over the activation either way, with the bits of the unfused layers.
//
// Numerics and determinism: per-row partial sums (float, over one row's W pixels) are
// combined in double over the rows in a fixed order (Chan et al.'s pairwise update for the
// variance), so the result is the same bits for any thread count (threads split rows only).
// The variance is two-pass per row (sum of squared deviations from the row's own mean), not
// E[x^2] - E[x]^2.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu/dropout_tiles.hpp"

namespace crackseg::onednn {

struct BnShape {
  int64_t rows = 0;  // N * H
  int64_t width = 0; // W: pixels per row
  int64_t channels = 0;
  [[nodiscard]] int64_t pixels() const { return rows * width; }
};

// Fused activation: none, or y = v > 0 ? v : slope * v (ReLU: slope 0).
struct BnAct {
  bool on = false;
  float slope = 0.0f;
};

// Per-call temporaries, sized once by reserve() in plan (nothing is allocated per step):
// two rows x C float partial sums and three per-channel float constants.
class BnWork {
 public:
  void reserve(const BnShape& s) {
    a_.assign(static_cast<std::size_t>(s.rows * s.channels), 0.0f);
    b_.assign(a_.size(), 0.0f);
    k_.assign(static_cast<std::size_t>(3 * s.channels), 0.0f);
  }
  [[nodiscard]] float* a() { return a_.data(); }
  [[nodiscard]] float* b() { return b_.data(); }
  [[nodiscard]] float* k(int i) { return k_.data() + static_cast<std::size_t>(i) * (k_.size() / 3); }

 private:
  std::vector<float> a_, b_, k_;
};

// Batch mean and biased variance per channel of x (nhwc).
void bn_batch_stats(const float* x, const BnShape& s, BnWork& w, std::span<double> mean, std::span<double> var);

// A dropout fused into batchnorm (the Graph's fuse_dropout): its mask words as the dropout
// layer would draw them (dropout_tiles.hpp, tiles over each sample's H*W pixels) and the
// scale 1 / (1 - p) of kept elements. words == null: no dropout.
struct BnDropout {
  const uint64_t* words = nullptr;
  DropoutTiles tiles;
  float scale = 0.0f;
};

// y = drop(act((x - mean[c]) * scale[c] + shift[c])); y may be x; drop: none when null.
// y_bf16 (not null): the result is written there as bf16 instead (round to nearest even,
// to_bf16.hpp; needs avx512bf16_available()) and y is not touched.
void bn_apply(const float* x, float* y, const BnShape& s, std::span<const float> mean, std::span<const float> scale,
              std::span<const float> shift, BnAct act, const BnDropout* drop = nullptr, uint16_t* y_bf16 = nullptr);

// (x - m) * a + b as bn_apply computes it (same rounding: no FMA contraction), for callers
// outside this file that need the sign of one pre-activation (frozen batchnorm's backward).
[[nodiscard]] float bn_pre_activation(float x, float m, float a, float b);

// The constants a training forward applied: y = act((x - mean) * scale + shift).
struct BnForward {
  std::span<const float> mean, scale, shift;
  const BnDropout* drop = nullptr;  // the fused dropout forward applied, if any
};

// Training backward, after the forward that used `f` on the same x. With g = drop(dy) * act'(v)
// (drop: the fused dropout's mask and scale, the dropout layer's own backward),
// v = (x - f.mean) * f.scale + f.shift (recomputed exactly as forward computed it):
//   dshift[c] += sum g, dscale[c] += sum g * xhat,
//   dx = gamma * invstd * (g - mean(g) - xhat * mean(g * xhat))   (dx may be null: sums only).
// dx_bf16 (not null): dx is written there as bf16 instead (as bn_apply's y_bf16).
void bn_backward(const float* x, const float* dy, float* dx, const BnShape& s, BnWork& w, const BnForward& f,
                 std::span<const double> invstd, std::span<const float> gamma, BnAct act, float* dscale,
                 float* dshift, uint16_t* dx_bf16 = nullptr);

}  // namespace crackseg::onednn
