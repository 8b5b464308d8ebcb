// Sharded, pad-free evaluation of a split: every image is scored by exactly one rank
// (io::eval_shard's contiguous blocks), whole images through train::Predictor, and the
// integer counts/histograms are summed over ranks, so the metrics equal the 1-rank metrics
// exactly whatever the rank count.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "src/models/model.hpp"

namespace crackseg::dist {
class Communicator;
}

namespace crackseg::train {

struct EvalResult {
  // {"images": n, "loss": mean per-pixel BCE of the probabilities, "mean": {per-image
  //  averaged metrics}, "micro": {dataset-level}, "ods": .., "ois": .., "ap": ..,
  //  "per_source": {source: {...}}, "threshold": t}
  nlohmann::json summary;
  // "f1" -> mean F1 ... plus "loss", "micro_f1", "ods", "ois", "ap": the numbers metrics.csv
  // and the scheduler see (as val_<key>).
  [[nodiscard]] std::map<std::string, double> flat_metrics() const;
  // A metric by name, with or without a "val_"/"test_" prefix; InputError naming the known
  // names when absent.
  [[nodiscard]] double lookup(const std::string& name) const;
};

// Evaluates `split` of cfg.data.path (at most max_images images when > 0) with the model in
// eval mode. Collective: every rank of `comm` must call it.
[[nodiscard]] EvalResult evaluate_split(const nlohmann::json& cfg, Model& model, dist::Communicator& comm,
                                        const std::string& split, int64_t max_images);

}  // namespace crackseg::train
