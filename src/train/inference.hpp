// Whole-image inference: a probability map (H, W) of crack for an image of any size.
//   U-Net / FlexUNet: the image is reflect-padded up to the model's size multiple, run whole,
//                     and cropped back.
//   Spiral-Net / hourglass: overlapping tiles of `tile` (a 128k-1 size, 255 by default) with
//                     stride tile/2; overlapping probabilities are averaged (each pixel
//                     is covered by 1-4 tiles; images smaller than a tile are reflect-padded).
//   patch CNN:        structured prediction as Fan et al.: each pixel's (2s+1)^2 outputs
//                     vote for the window around it; the vote sums are normalised by the
//                     number of votes each pixel received. A context-padded model runs
//                     fully convolutionally over the image (src/train/patch_dense.hpp);
//                     Fan et al.'s zero-padded one is evaluated one patch per pixel.
// All run in eval mode (running batchnorm statistics, no dropout).
#pragma once
#include <nlohmann/json.hpp>

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
  // patch CNN: "dense" (shared convolutions; needs model.padding = "context"), "patch" (one
  // patch per pixel) or "auto" (dense when the model allows it).
  std::string patch_mode = "auto";
};

// The options a resolved run config asks for ([eval] tile, patch_mode, batch; batch 0 means
// train.micro_batch).
[[nodiscard]] InferenceOptions inference_options(const nlohmann::json& cfg);

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
  // `t` itself on CPU backends; a host copy (reused buffer) of a device output otherwise.
  const Tensor& on_host(const Tensor& t);

  Model& model_;
  InferenceOptions opt_;
  std::vector<uint64_t> ids_;
  Tensor host_out_;
  std::unique_ptr<DensePatchPredictor> dense_;  // built on first use (copies the weights then)
};

// Reflect-pads an (H, W, 3) float image to (H2, W2, 3) (BORDER_REFLECT_101 style, repeated
// for pads larger than the image).
[[nodiscard]] std::vector<float> reflect_pad(const float* image, int H, int W, int H2, int W2);

}  // namespace crackseg::train
