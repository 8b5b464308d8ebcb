// Prediction writers: turn a probability map into the PNGs `crackseg predict` writes (gray
// probability, 0/1 mask, red overlay) and the per-epoch panels of `train.predict_images`
// (image | ground truth | probability | overlay side by side, as FlexUNet's epoch-change
// inference shows them).
#pragma once
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

namespace crackseg::io {

struct PredictionImages {
  std::vector<uint8_t> prob_rgb;  // (H, W, 3) gray: round(p * 255)
  std::vector<uint8_t> mask;      // (H, W) 0/1: p >= threshold
  std::vector<uint8_t> overlay;   // (H, W, 3): crack pixels painted red at 60% over the photo
};

// rgb: (H, W, 3) 8-bit photo; prob: (H, W) crack probabilities.
[[nodiscard]] PredictionImages render_prediction(std::span<const uint8_t> rgb, std::span<const float> prob, int H,
                                                 int W, double threshold);

// Writes <base>_prob.png, <base>_pred_mask.png and <base>_overlay.png (not <base>_mask.png:
// several datasets name their ground truth that way, and a prediction must never overwrite
// or be mistaken for it).
void save_prediction(const std::filesystem::path& base, const PredictionImages& p, int H, int W);

// One PNG, four panels left to right: photo, ground truth (white crack), probability, overlay;
// rows [0, H) are the panels, below them a strip labels each ("photo", "ground truth",
// "probability", "prediction p >= t" when threshold >= 0). panel_label_height(W) rows.
void save_prediction_panel(const std::filesystem::path& path, std::span<const uint8_t> rgb,
                           std::span<const uint8_t> mask01, const PredictionImages& p, int H, int W,
                           double threshold = -1);
[[nodiscard]] int panel_label_height(int W);

}  // namespace crackseg::io
