// Dense inference of the patch CNN (model.padding = "context") without cutting one patch
// per pixel.
//
// Per-patch evaluation runs the whole network on a 36x36 context patch around every pixel
// (h=13): ~5.2 M multiply-adds per pixel (0.79 T per 480x320 image). Neighbouring patches
// share almost all of their convolutions, so here the network runs once over the
// (symmetric-padded) image, fully convolutionally:
//
//   conv, conv (valid)          over the padded image band            batch 1
//   maxpool 2 in 4 phases       (row, col offset 0/1) -> batch          batch 4
//   conv, conv (valid)                                                  batch 4
//   maxpool 2 in 4 phases each  -> batch                                batch 16
//   FC1 as a P2 x P2 valid conv (its weights reshaped), FC2, FC3 as 1x1 convs
//
// ("shift and stitch": the 16 phase maps hold every pixel's logits, pixel (i, j) in phase
// (i mod 2, j mod 2, (i/2) mod 2, (j/2) mod 2) at (i/4, j/4)). ~96 k multiply-adds per
// pixel for h=13, 54x fewer. Bands of rows bound the memory on large images.
//
// This needs the patch CNN with model.padding = "context" (src/models/patch_cnn.cpp): its
// convolutions are 'valid' over a context patch of side 4*P2+12 (36 for h=13) around each
// pixel, so every value is a function of its image position and sharing is exact (to float
// rounding: the summation order differs). tests/unit/test_patch_dense.cpp checks dense
// against per-patch evaluation of the same model. With Fan et al.'s 'same' padding every
// patch sees zeros at its own border (27 of the 36 positions FC1 reads depend on them), so
// such a model is predicted one patch per pixel (Predictor's "patch" mode).
#pragma once
#include <cstdint>
#include <vector>

#include "src/graph/graph.hpp"
#include "src/models/model.hpp"

namespace crackseg::train {

// Fan et al.'s structured-prediction vote: each pixel's (2s+1)^2 outputs vote for the window
// around it; every image pixel's probability is the mean of the votes it received.
class PatchVotes {
 public:
  PatchVotes(int H, int W, int s);
  // logits: the (2s+1)^2 outputs of the patch centred on (y, x), row-major window order,
  // `stride` floats apart.
  void add(int y, int x, const float* logits, int64_t stride = 1);
  [[nodiscard]] std::vector<float> probabilities() const;

 private:
  int H_, W_, s_;
  std::vector<double> sum_;
  std::vector<uint16_t> count_;
};

// Geometry of the patch CNN (from its [model] config): h, s, P2 = floor(h/2) (the side of
// the last pooled map), whether it reads context (padding = "context"), its input side
// (2h+1, or 4*P2 + 12 with context) and `before`, the input rows/cols before the centre
// (h, or h + 6 with context).
struct PatchGeometry {
  int h = 13, s = 2, p2 = 6;
  bool context = false;
  int side = 27, before = 13;
  [[nodiscard]] static PatchGeometry of(const Model& model);
  [[nodiscard]] int window() const { return (2 * s + 1) * (2 * s + 1); }
  // Multiply-adds per output pixel of DensePatchPredictor: every layer once per pixel.
  [[nodiscard]] double dense_macs_per_pixel() const;
};

class DensePatchPredictor {
 public:
  // Builds the three fully-convolutional stages on the model's backend (CPU backends) and
  // copies the model's current weights. InputError unless the model reads context. `band_pixels`: output pixels per band (memory bound).
  explicit DensePatchPredictor(Model& model, int64_t band_pixels = 512 * 1024);
  ~DensePatchPredictor();
  DensePatchPredictor(const DensePatchPredictor&) = delete;
  DensePatchPredictor& operator=(const DensePatchPredictor&) = delete;

  // image: (H, W, 3) float x/255; returns (H, W) normalised vote probabilities.
  [[nodiscard]] std::vector<float> predict(const float* image, int H, int W);

 private:
  PatchGeometry geo_;
  int64_t band_pixels_;
  Graph convs1_, convs2_, head_;
};

}  // namespace crackseg::train
