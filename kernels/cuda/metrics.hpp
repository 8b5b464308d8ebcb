// Metric counts on the device: exact integer confusion counts per image, which the metric
// code (src/metrics) turns into precision, recall, F1, IoU, Dice and accuracy. A pixel is
// predicted crack when sigmoid(logit) >= threshold, computed as logit >= log(t / (1 - t))
// in double (the same decision for every finite logit, without a per-pixel exp).
#pragma once
#include <cstdint>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace crackseg::cuda {

struct ConfusionCounts {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
};

// logits (N, 1, H, W) or any (N, ...) f32 cuda tensor; target same dims and layout, values
// 0/1 (> 0.5 is crack). Returns one entry per item n (integer atomics: order-free, exact).
[[nodiscard]] std::vector<ConfusionCounts> confusion_counts(const Tensor& logits, const Tensor& target,
                                                            double threshold);

}  // namespace crackseg::cuda
