#include "src/train/evaluate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
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

namespace {
// A CSV field: quoted when it holds a comma, quote or newline.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
}  // namespace

std::string EvalResult::per_image_csv(const std::string& dataset, bool header) const {
  std::string out;
  if (header)
    out = "dataset,name,source,precision,recall,f1,iou,dice,accuracy,ap,crack_pixels,predicted_pixels,tp,fp,fn,tn,"
          "threshold\n";
  const double thr = summary.at("threshold").get<double>();
  char buf[512];
  for (const auto& row : per_image) {
    const auto& s = row.scores;
    std::string ap;
    if (s.has_ap) {
      std::snprintf(buf, sizeof buf, "%.17g", s.ap);
      ap = buf;
    }
    std::snprintf(buf, sizeof buf, ",%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%s,%lld,%lld,%lld,%lld,%lld,%lld,%.17g\n",
                  s.scores.precision, s.scores.recall, s.scores.f1, s.scores.iou, s.scores.dice, s.scores.accuracy,
                  ap.c_str(), static_cast<long long>(s.crack_pixels), static_cast<long long>(s.predicted_pixels),
                  static_cast<long long>(s.counts.tp), static_cast<long long>(s.counts.fp),
                  static_cast<long long>(s.counts.fn), static_cast<long long>(s.counts.tn), thr);
    out += csv_field(dataset) + "," + csv_field(row.name) + "," + csv_field(row.source) + buf;
  }
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

std::optional<double> fixed_threshold(const nlohmann::json& cfg) {
  const nlohmann::json& t = cfg.at("eval").at("threshold");
  if (t.is_number()) {
    const double v = t.get<double>();
    if (!(v >= 0 && v <= 1)) throw InputError("eval.threshold = " + t.dump() + ": must be in [0, 1], \"val\" or \"auto\"");
    return v;
  }
  const std::string s = t.is_string() ? t.get<std::string>() : std::string();
  if (s == "val") return std::nullopt;
  if (s == "auto") {
    const bool patch_cnn = cfg.at("model").value("name", std::string()) == "patch_cnn";
    const std::string val = cfg.at("data").at("val_split").get<std::string>();
    if (patch_cnn && !val.empty()) {
      // Away from the training data (predict on another machine): the run's recorded choice.
      const std::filesystem::path data = cfg.at("data").at("path").get<std::string>();
      if (!std::filesystem::exists(data)) return std::nullopt;
      const io::DatasetFile file(data);
      if (file.has_split(val) && !file.split(val).empty()) return std::nullopt;
    }
    return 0.5;
  }
  throw InputError("eval.threshold = " + t.dump() + ": must be a number in [0, 1], \"val\" or \"auto\"");
}

nlohmann::json with_val_threshold(const nlohmann::json& cfg, const nlohmann::json& val_summary) {
  nlohmann::json out = cfg;
  if (!fixed_threshold(cfg) && val_summary.is_object() && val_summary.contains("threshold")) {
    out["eval"]["threshold"] = val_summary.at("threshold");
    out["eval"]["threshold_from"] = "val split";  // recorded with the metrics
  }
  return out;
}

void require_images(const std::filesystem::path& data, const std::string& split, const std::string& what) {
  const io::DatasetFile file(data);
  if (!file.has_split(split))
    throw InputError(what + " = \"" + split + "\": " + data.string() + " has no split '" + split + "'");
  if (file.split(split).empty())
    throw InputError(what + " = \"" + split + "\": split '" + split + "' of " + data.string() +
                     " holds no images, so there is nothing to evaluate (give the split images when "
                     "ingesting, or name another split)");
}

EvalResult evaluate_split(const nlohmann::json& cfg, Model& model, dist::Communicator& comm, const std::string& split,
                          int64_t max_images) {
  const io::DatasetFile file(cfg.at("data").at("path").get<std::string>());
  std::vector<uint32_t> idx = file.split(split);
  if (max_images > 0 && static_cast<int64_t>(idx.size()) > max_images) idx.resize(static_cast<std::size_t>(max_images));
  if (idx.empty()) require_images(file.path(), split, "evaluation split");

  // A tuned threshold: found on this split when it is the validation split, else taken from
  // an evaluation of the validation split first.
  const std::optional<double> fixed = fixed_threshold(cfg);
  const std::string val_split = cfg.at("data").at("val_split").get<std::string>();
  double threshold = fixed.value_or(0.5);
  const bool tune_here = !fixed && split == val_split;
  if (!fixed && !tune_here) {
    if (val_split.empty())
      throw InputError("eval.threshold = \"val\" needs a validation split, but data.val_split is empty");
    require_images(file.path(), val_split, "data.val_split (for eval.threshold = \"val\")");
    const EvalResult v = evaluate_split(cfg, model, comm, val_split, cfg.at("data").at("max_val").get<int64_t>());
    threshold = v.summary.at("threshold").get<double>();
  }

  // Every rank registers every source of the dataset in the same (sorted) order, and each image
  // has a record at its position in the split, so the flat count vectors line up for the
  // allreduce and the sum over ranks is exactly the 1-rank accumulator.
  const std::set<std::string> src_set(file.sources().begin(), file.sources().end());
  const std::vector<std::string> srcs(src_set.begin(), src_set.end());
  MetricLayout layout;
  layout.num_images = static_cast<int64_t>(idx.size());
  layout.bins = static_cast<int>(cfg.at("eval").at("bins").get<int64_t>());
  layout.threshold = threshold;
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
  // Every rank holds the summed counts now, so every rank picks the same bin.
  if (tune_here) counts = rethreshold(counts, best_mean_f1_bin(counts));

  const MetricReport report = compute_metrics(counts);
  EvalResult res;
  res.summary = report.all.to_json();
  res.summary["by_source"] = nlohmann::json::object();
  for (const auto& [name, sm] : report.by_source) res.summary["by_source"][name] = sm.to_json();
  res.summary["threshold"] = counts.layout().threshold;
  res.summary["threshold_from"] = fixed ? cfg.at("eval").value("threshold_from", std::string("fixed")) : "val split";
  res.summary["split"] = split;
  res.summary["loss"] = static_cast<double>(loss_fixed) / kLossScale / static_cast<double>(n);
  res.per_image.reserve(idx.size());
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t i = idx[static_cast<std::size_t>(j)];
    res.per_image.push_back({file.names()[i], file.sources()[i], image_scores(counts, j)});
  }
  return res;
}

}  // namespace crackseg::train
