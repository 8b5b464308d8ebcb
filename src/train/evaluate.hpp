// Sharded, pad-free evaluation of a split: every image is scored by exactly one rank
// (io::eval_shard's contiguous blocks), whole images through train::Predictor, and the
// integer counts/histograms are summed over ranks, so the metrics equal the 1-rank metrics
// exactly whatever the rank count.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "src/metrics/metrics.hpp"
#include "src/models/model.hpp"

namespace crackseg::dist {
class Communicator;
}

namespace crackseg::train {

// One evaluated image (`crackseg eval --per-image`), in split order.
struct ImageRow {
  std::string name, source;
  ImageScores scores;
};

struct EvalResult {
  // {"images": n, "loss": mean per-pixel BCE of the probabilities, "mean": {per-image
  //  averaged metrics}, "micro": {dataset-level}, "ods": .., "ois": .., "ap": ..,
  //  "per_source": {source: {...}}, "threshold": t, "threshold_from": "fixed" | "val split"}
  nlohmann::json summary;
  std::vector<ImageRow> per_image;  // every evaluated image, on every rank
  // "f1" -> mean F1 ... plus "loss", "micro_f1", "ods", "ois", "ap": the numbers metrics.csv
  // and the scheduler see (as val_<key>).
  [[nodiscard]] std::map<std::string, double> flat_metrics() const;
  // A metric by name, with or without a "val_"/"test_" prefix; InputError naming the known
  // names when absent.
  [[nodiscard]] double lookup(const std::string& name) const;
  // The per-image rows as CSV (`crackseg eval --per-image`, the trainer's test_per_image.csv):
  // dataset,name,source,precision,recall,f1,iou,dice,accuracy,ap,crack_pixels,
  // predicted_pixels,tp,fp,fn,tn,threshold (header line when `header`). The per-image
  // scores average to the summary's means, ap over the rows with crack pixels to its map; ap
  // is empty for an image without crack pixels.
  [[nodiscard]] std::string per_image_csv(const std::string& dataset, bool header) const;
};

// eval.threshold: a number in [0, 1]; "val": the threshold (a bin edge k / eval.bins) that
// maximises the mean per-image F1 on the validation split (data.val_split, at most
// data.max_val images), applied to every split; "auto" (default): "val" for the patch CNN
// (its vote-normalised probabilities peak below 0.5, so 0.5 is a trap) when the run has a
// validation split, 0.5 otherwise. Returns the fixed threshold, or nullopt for "val".
[[nodiscard]] std::optional<double> fixed_threshold(const nlohmann::json& cfg);

// `cfg` with eval.threshold set to the threshold `val_summary` (an EvalResult::summary of the
// validation split) was scored at, when cfg's threshold is tuned on the validation split and
// the summary has one; `cfg` unchanged otherwise. The trainer applies the last validation's
// threshold to the test split (and the prediction panels) this way.
[[nodiscard]] nlohmann::json with_val_threshold(const nlohmann::json& cfg, const nlohmann::json& val_summary);

// InputError naming the split, the file and `what` (e.g. "data.test_split") when `split` of
// the dataset holds no images: an empty evaluation set is never reported as numbers.
void require_images(const std::filesystem::path& data, const std::string& split, const std::string& what);

// Evaluates `split` of cfg.data.path (at most max_images images when > 0) with the model in
// eval mode. A tuned threshold (fixed_threshold() = nullopt) is found on this split when it is
// the validation split, else the validation split is evaluated first to find it.
// Collective: every rank of `comm` must call it.
[[nodiscard]] EvalResult evaluate_split(const nlohmann::json& cfg, Model& model, dist::Communicator& comm,
                                        const std::string& split, int64_t max_images);

}  // namespace crackseg::train
