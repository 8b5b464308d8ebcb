#include "io/image/prediction.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "io/image/image.hpp"

namespace crackseg::io {

PredictionImages render_prediction(std::span<const uint8_t> rgb, std::span<const float> prob, int H, int W,
                                   double threshold) {
  const std::size_t n = static_cast<std::size_t>(H) * W;
  PredictionImages p;
  p.prob_rgb.resize(n * 3);
  p.mask.resize(n);
  p.overlay.resize(n * 3);
  for (std::size_t i = 0; i < n; ++i) {
    const auto g = static_cast<uint8_t>(std::lround(std::clamp(prob[i], 0.0f, 1.0f) * 255.0f));
    p.prob_rgb[i * 3] = p.prob_rgb[i * 3 + 1] = p.prob_rgb[i * 3 + 2] = g;
    p.mask[i] = prob[i] >= threshold ? 1 : 0;
    for (int c = 0; c < 3; ++c) {
      const float v = rgb[i * 3 + c], red = c == 0 ? 255.0f : 0.0f;
      p.overlay[i * 3 + c] = static_cast<uint8_t>(p.mask[i] ? 0.4f * v + 0.6f * red : v);
    }
  }
  return p;
}

void save_prediction(const std::filesystem::path& base, const PredictionImages& p, int H, int W) {
  save_image_rgb(base.string() + "_prob.png", p.prob_rgb.data(), H, W);
  save_mask01(base.string() + "_pred_mask.png", p.mask.data(), H, W);
  save_image_rgb(base.string() + "_overlay.png", p.overlay.data(), H, W);
}

namespace {
double label_scale(int W) { return std::clamp(W / 400.0, 0.3, 1.5); }
}  // namespace

int panel_label_height(int W) { return static_cast<int>(std::ceil(28 * label_scale(W))); }

void save_prediction_panel(const std::filesystem::path& path, std::span<const uint8_t> rgb,
                           std::span<const uint8_t> mask01, const PredictionImages& p, int H, int W,
                           double threshold) {
  const int PW = 4 * W, L = panel_label_height(W);
  cv::Mat panel(H + L, PW, CV_8UC3, cv::Scalar(255, 255, 255));
  for (int y = 0; y < H; ++y) {
    uint8_t* row = panel.ptr<uint8_t>(y);
    const std::size_t o = static_cast<std::size_t>(y) * W;
    std::memcpy(row, &rgb[o * 3], static_cast<std::size_t>(W) * 3);
    for (int x = 0; x < W; ++x) std::memset(row + (W + x) * 3, mask01[o + x] ? 255 : 0, 3);
    std::memcpy(row + 2 * W * 3, &p.prob_rgb[o * 3], static_cast<std::size_t>(W) * 3);
    std::memcpy(row + 3 * W * 3, &p.overlay[o * 3], static_cast<std::size_t>(W) * 3);
  }
  char pred[48] = "prediction";
  if (threshold >= 0) std::snprintf(pred, sizeof pred, "prediction p >= %.2f", threshold);
  const char* labels[4] = {"photo", "ground truth", "probability", pred};
  const double scale = label_scale(W);
  for (int k = 0; k < 4; ++k)
    cv::putText(panel, labels[k], cv::Point(k * W + 3, H + static_cast<int>(L * 0.72)), cv::FONT_HERSHEY_SIMPLEX,
                0.5 * scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  save_image_rgb(path, panel.data, H + L, PW);
}

}  // namespace crackseg::io
