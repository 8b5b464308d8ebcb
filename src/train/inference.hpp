// Whole-image inference: a probability map (H, W) of crack for an image of any size.
//   U-Net / FlexUNet: the image is reflect-padded up to the model's size multiple, run whole,
//                     and cropped back.
//   Spiral-Net / hourglass: overlapping tiles of `tile` (a 128k-1 size, 255 by default) with
//                     stride tile/2; overlapping probabilities are averaged (each pixel
//                     is covered by 1-4 tiles; images smaller than a tile are reflect-padded).
//   patch CNN:        structured prediction as Fan et al.: each pixel's (2s+1)^2 outputs
//                     vote for the window around it; the vote sums are normalised by the
//                     number of votes each pixel received. patch_mode "dense" runs the
//                     network fully convolutionally over the image (src/train/patch_dense.hpp,
//                     image context at patch borders); "patch" cuts one zero-padded patch per
//                     pixel (the training-time computation, ~45x slower).
// All run in eval mode (running batchnorm statistics, no dropout).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/graph/layer.hpp"
#include "src/models/model.hpp"

namespace crackseg::train {

struct InferenceOptions {
  int tile = 255;     // Spiral-Net / hourglass tile side (must satisfy the model's rule)
  int batch = 4;      // tiles / patches per forward
  std::string patch_mode = "dense";  // patch CNN: "dense" | "patch"
};

class DensePatchPredictor;

class Predictor {
 public:
  Predictor(Model& model, InferenceOptions opt);
  ~Predictor();
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;
  // image: (H, W, 3) float x/255 (as the reader produces); returns (H, W) probabilities.
  [[nodiscard]] std::vector<float> predict(const float* image, int H, int W);

 private:
  std::vector<float> predict_whole(const float* image, int H, int W);
  std::vector<float> predict_tiled(const float* image, int H, int W);
  std::vector<float> predict_patches(const float* image, int H, int W);
  // Runs the graph on `batch` (n, 3, h, w) nhwc and writes per-pixel crack probabilities
  // (n, h, w) for logit / softmax2 outputs.
  void probabilities(const Tensor& batch, std::vector<float>& out);

  Model& model_;
  InferenceOptions opt_;
  std::vector<uint64_t> ids_;
  std::unique_ptr<DensePatchPredictor> dense_;  // built on first use (copies the weights then)
};

// Reflect-pads an (H, W, 3) float image to (H2, W2, 3) (BORDER_REFLECT_101 style, repeated
// for pads larger than the image).
[[nodiscard]] std::vector<float> reflect_pad(const float* image, int H, int W, int H2, int W2);

}  // namespace crackseg::train
