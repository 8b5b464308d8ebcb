#include "src/train/evaluate.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include "io/dataset/dataset.hpp"
#include "src/core/error.hpp"
#include "src/dist/communicator.hpp"
#include "src/metrics/metrics.hpp"
#include "src/train/inference.hpp"

namespace crackseg::train {

namespace {
// Per-image mean BCE in fixed point (2^-40 units), so the sum over images is exact and
// independent of how images are spread over ranks (an int64 allreduce, not a double one).
constexpr double kLossScale = 1099511627776.0;  // 2^40
}  // namespace

std::map<std::string, double> EvalResult::flat_metrics() const {
  std::map<std::string, double> out;
  for (auto it = summary.begin(); it != summary.end(); ++it)
    if ((it->is_number_float() || it.key() == "loss") && it.key() != "threshold" && it.key() != "ods_threshold")
      out[it.key()] = it->get<double>();
  return out;
}

double EvalResult::lookup(const std::string& name) const {
  std::string key = name;
  for (const char* p : {"val_", "test_"})
    if (key.rfind(p, 0) == 0) key = key.substr(std::string(p).size());
  const auto m = flat_metrics();
  if (auto it = m.find(key); it != m.end()) return it->second;
  std::string known;
  for (const auto& [k, v] : m) known += (known.empty() ? "" : ", ") + k;
  throw InputError("unknown metric '" + name + "' (known: " + known + ")");
}

EvalResult evaluate_split(const nlohmann::json& cfg, Model& model, dist::Communicator& comm, const std::string& split,
                          int64_t max_images) {
  const io::DatasetFile file(cfg.at("data").at("path").get<std::string>());
  std::vector<uint32_t> idx = file.split(split);
  if (max_images > 0 && static_cast<int64_t>(idx.size()) > max_images) idx.resize(static_cast<std::size_t>(max_images));

  // Every rank registers every source of the dataset in the same (sorted) order, and each image
  // has a record at its position in the split, so the flat count vectors line up for the
  // allreduce and the sum over ranks is exactly the 1-rank accumulator.
  const std::set<std::string> src_set(file.sources().begin(), file.sources().end());
  const std::vector<std::string> srcs(src_set.begin(), src_set.end());
  MetricLayout layout;
  layout.num_images = static_cast<int64_t>(idx.size());
  layout.bins = static_cast<int>(cfg.at("eval").at("bins").get<int64_t>());
  layout.threshold = cfg.at("eval").at("threshold").get<double>();
  layout.sources = srcs;
  MetricCounts counts(layout);
  // io::eval_shard's rule: rank r scores split positions [r*n/R, (r+1)*n/R).
  const int64_t n = layout.num_images, R = comm.size(), r = comm.rank();
  const int64_t first = r * n / R, last = (r + 1) * n / R;

  Predictor predictor(model, inference_options(cfg));

  const int H = file.height(), W = file.width();
  std::vector<uint8_t> img(file.image_bytes()), mask(file.mask_bytes());
  std::vector<float> x(file.image_bytes());
  int64_t loss_fixed = 0;
  for (int64_t j = first; j < last; ++j) {
    const uint32_t i = idx[static_cast<std::size_t>(j)];
    file.read_image(i, img.data());
    file.read_mask(i, mask.data());
    for (std::size_t k = 0; k < img.size(); ++k) x[k] = img[k] / 255.0f;
    const std::vector<float> prob = predictor.predict(x.data(), H, W);
    const int source = static_cast<int>(std::lower_bound(srcs.begin(), srcs.end(), file.sources()[i]) - srcs.begin());
    counts.add_image(j, source, prob, std::span<const uint8_t>(mask));
    double bce = 0;
    for (std::size_t k = 0; k < prob.size(); ++k) {
      const double p = std::clamp(static_cast<double>(prob[k]), 1e-7, 1.0 - 1e-7);
      bce -= mask[k] ? std::log(p) : std::log1p(-p);
    }
    loss_fixed += static_cast<int64_t>(std::llround(bce / static_cast<double>(prob.size()) * kLossScale));
  }
  comm.allreduce(std::span<int64_t>(counts.flat()), dist::ReduceOp::sum);
  loss_fixed = comm.allreduce_value(loss_fixed, dist::ReduceOp::sum);

  const MetricReport report = compute_metrics(counts);
  EvalResult res;
  res.summary = report.all.to_json();
  res.summary["by_source"] = nlohmann::json::object();
  for (const auto& [name, sm] : report.by_source) res.summary["by_source"][name] = sm.to_json();
  res.summary["threshold"] = layout.threshold;
  res.summary["split"] = split;
  res.summary["loss"] = n == 0 ? 0.0 : static_cast<double>(loss_fixed) / kLossScale / static_cast<double>(n);
  return res;
}

}  // namespace crackseg::train
