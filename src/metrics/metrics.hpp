// Segmentation metrics from exact integer counts, reducible across ranks without rounding.
//
//   MetricCounts counts({.num_images = split.size(), .bins = 256, .threshold = 0.5,
//                        .sources = dataset.source_names()});
//   counts.add_batch(prob, target, global_indices, source_ids);      // on every rank
//   MPI_Allreduce(MPI_IN_PLACE, counts.flat().data(), counts.flat().size(), MPI_INT64_T,
//                 MPI_SUM, comm);                                     // trainsys's job
//   MetricReport r = compute_metrics(counts);                        // floats only now
//
// Everything an evaluation needs lives in one std::vector<int64_t>, one fixed-size record per
// image of the split, addressed by the image's index in the split: a rank fills only the
// records of its own images and leaves the others zero, so the element-wise sum over ranks is
// exactly the 1-rank accumulator. Record of image i (stride 6 + 2 * bins):
//   [added, source + 1, TP, FP, FN, TN, pos_hist[bins], neg_hist[bins]]
// `added` counts how often the image was evaluated: compute_metrics rejects values above 1
// (an image evaluated twice, e.g. duplicated across ranks) and skips images with 0.
//
// Pixel decisions: predicted crack when p >= threshold (p = NaN counts as 0); ground truth crack
// when a uint8 mask is non-zero or a float mask is > 0.5. Score histograms: pixel p goes to bin
// min(bins - 1, floor(p * bins)) (p clamped to [0, 1]), split by ground truth.
//
// Definitions (per image, and "micro" on counts summed over images):
//   if TP + FP + FN == 0 (no crack, none predicted): precision = recall = F1 = IoU = Dice = 1
//   else precision = TP/(TP+FP), recall = TP/(TP+FN), with 0/0 := 0;
//        F1 = Dice = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN)
//   accuracy = (TP+TN)/(TP+FP+FN+TN)
// The per-image scores are averaged over the evaluated images (as the papers report); nothing
// is ever NaN.
// AP ("mAP" of the Spiral-Net paper): per image, bin thresholds t_k = k/bins for k = bins-1
// down to 0 give TP_k, FP_k (pixels in bins >= k); AP = sum_k (R_k - R_{k+1}) P_k with R_bins = 0,
// P_k = TP_k/(TP_k+FP_k): the non-interpolated step-wise area (scikit-learn's
// average_precision_score with each bin as one tied score level). AP is undefined for an image
// without crack pixels: mAP averages over images with at least one (their count is ap_images;
// mAP = 0 when there are none).
// ODS: F at one threshold t_k shared by the whole set (counts summed over images), maximised
// over k; ods_threshold = the best t_k. OIS: the mean over images of each image's best F over
// the t_k. F here follows the per-image convention above (no crack and none predicted = 1).
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "src/tensor/tensor.hpp"

namespace crackseg {

struct MetricLayout {
  int64_t num_images = 0;  // records, one per image of the evaluated split
  int bins = 256;          // score histogram bins for AP / ODS / OIS
  double threshold = 0.5;  // p >= threshold is predicted crack
  std::vector<std::string> sources = {"all"};  // per-image source ids index this
};

struct Confusion {
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
  Confusion& operator+=(const Confusion& o) {
    tp += o.tp, fp += o.fp, fn += o.fn, tn += o.tn;
    return *this;
  }
  bool operator==(const Confusion&) const = default;
};

struct Scores {
  double precision = 0, recall = 0, f1 = 0, iou = 0, dice = 0, accuracy = 0;
};
// The definitions in the header comment.
[[nodiscard]] Scores scores_from(const Confusion& c);
// F = 2TP/(2TP+FP+FN), 1 when the denominator is 0.
[[nodiscard]] double f_measure(int64_t tp, int64_t fp, int64_t fn);

class MetricCounts {
 public:
  explicit MetricCounts(MetricLayout layout);

  // One image: probabilities and ground truth over its pixels (same length).
  void add_image(int64_t index, int source, std::span<const float> prob, std::span<const uint8_t> mask);
  void add_image(int64_t index, int source, std::span<const float> prob, std::span<const float> mask);
  // A batch: prob f32 (N, 1, H, W) in any format or (N, ...) plain; target u8 or f32 with the
  // same dims and layout; indices[n] = split index of item n, sources[n] its source id.
  void add_batch(const Tensor& prob, const Tensor& target, std::span<const int64_t> indices,
                 std::span<const int> sources);
  // Element-wise sum (same layout required): merging two accumulators = accumulating both.
  void merge(const MetricCounts& other);

  [[nodiscard]] const std::vector<int64_t>& flat() const { return data_; }
  [[nodiscard]] std::vector<int64_t>& flat() { return data_; }  // for in-place allreduce
  [[nodiscard]] static MetricCounts from_flat(MetricLayout layout, std::vector<int64_t> flat);

  [[nodiscard]] const MetricLayout& layout() const { return layout_; }
  [[nodiscard]] int64_t stride() const { return 6 + 2 * static_cast<int64_t>(layout_.bins); }
  [[nodiscard]] int64_t times_added(int64_t image) const { return record(image)[0]; }
  [[nodiscard]] int source(int64_t image) const { return static_cast<int>(record(image)[1] - 1); }
  [[nodiscard]] Confusion confusion(int64_t image) const;
  [[nodiscard]] std::span<const int64_t> pos_hist(int64_t image) const {
    return {record(image) + 6, static_cast<std::size_t>(layout_.bins)};
  }
  [[nodiscard]] std::span<const int64_t> neg_hist(int64_t image) const {
    return {record(image) + 6 + layout_.bins, static_cast<std::size_t>(layout_.bins)};
  }

 private:
  [[nodiscard]] const int64_t* record(int64_t image) const;
  int64_t* claim(int64_t index, int source);  // checks, marks added, returns the record
  template <typename M>
  void count(int64_t* rec, std::span<const float> prob, std::span<const M> mask) const;

  MetricLayout layout_;
  std::vector<int64_t> data_;
};

struct MetricSummary {
  int64_t images = 0;  // evaluated images
  Scores mean;         // per-image scores averaged over the images
  Confusion counts;    // summed over the images
  Scores micro;        // from the summed counts
  double map = 0;      // mean per-image AP over images with crack pixels
  int64_t ap_images = 0;
  double ods = 0, ods_threshold = 0, ois = 0;
  [[nodiscard]] nlohmann::json to_json() const;
  // Flat names for logs and monitors: precision, recall, f1, iou, dice, accuracy,
  // micro_precision, ..., map, ods, ois.
  [[nodiscard]] std::map<std::string, double> scalars() const;
};

struct MetricReport {
  MetricSummary all;
  std::map<std::string, MetricSummary> by_source;  // sources with at least one image
  [[nodiscard]] nlohmann::json to_json() const;    // {"all": {...}, "by_source": {name: {...}}}
};

// Throws Error when an image was counted more than once (duplicated across ranks).
[[nodiscard]] MetricReport compute_metrics(const MetricCounts& counts);

// One image's numbers at the layout's threshold (`crackseg eval --per-image`): its counts,
// scores, AP (has_ap = false, ap = 0 when it has no crack pixel), crack pixels (TP + FN) and
// predicted pixels (TP + FP). The mean of the per-image scores over the evaluated images is
// MetricSummary::mean, and of ap over has_ap images MetricSummary::map, exactly.
struct ImageScores {
  Confusion counts;
  Scores scores;
  double ap = 0;
  bool has_ap = false;
  int64_t crack_pixels = 0, predicted_pixels = 0;
};
[[nodiscard]] ImageScores image_scores(const MetricCounts& counts, int64_t image);

// eval.threshold = "val": the bin edge k (threshold k / bins) that maximises the mean
// per-image F1 over the evaluated images, from the score histograms (ties: the lowest k).
[[nodiscard]] int best_mean_f1_bin(const MetricCounts& counts);
// The same counts with TP/FP/FN/TN re-derived from the histograms at threshold bin / bins
// (pixels in bins >= `bin` are predicted crack): what counting at that threshold gives.
[[nodiscard]] MetricCounts rethreshold(const MetricCounts& counts, int bin);
// Summary over the given images (each evaluated exactly once).
[[nodiscard]] MetricSummary summarize(const MetricCounts& counts, std::span<const int64_t> images);

}  // namespace crackseg
