// From reduced integer counts to the reported floats (see metrics.hpp for every definition).
// Sums over images run in image order in double, so the report is the same on every rank.
#include <algorithm>

#include "src/core/error.hpp"
#include "src/metrics/metrics.hpp"

namespace crackseg {

namespace {
double ratio(int64_t num, int64_t den) {  // 0/0 := 0
  return den > 0 ? static_cast<double>(num) / static_cast<double>(den) : 0.0;
}
}  // namespace

double f_measure(int64_t tp, int64_t fp, int64_t fn) {
  const int64_t den = 2 * tp + fp + fn;
  return den > 0 ? 2.0 * static_cast<double>(tp) / static_cast<double>(den) : 1.0;
}

Scores scores_from(const Confusion& c) {
  Scores s;
  const int64_t total = c.tp + c.fp + c.fn + c.tn;
  s.accuracy = total > 0 ? static_cast<double>(c.tp + c.tn) / static_cast<double>(total) : 1.0;
  if (c.tp + c.fp + c.fn == 0) {
    s.precision = s.recall = s.f1 = s.iou = s.dice = 1.0;
    return s;
  }
  s.precision = ratio(c.tp, c.tp + c.fp);
  s.recall = ratio(c.tp, c.tp + c.fn);
  s.f1 = s.dice = f_measure(c.tp, c.fp, c.fn);
  s.iou = ratio(c.tp, c.tp + c.fp + c.fn);
  return s;
}

MetricSummary summarize(const MetricCounts& counts, std::span<const int64_t> images) {
  MetricSummary out;
  const int bins = counts.layout().bins;
  std::vector<int64_t> tp_k(static_cast<std::size_t>(bins)), fp_k(tp_k.size()), fn_k(tp_k.size());
  Scores sum;
  double ap_sum = 0, ois_sum = 0;
  for (const int64_t i : images) {
    const Confusion c = counts.confusion(i);
    const Scores s = scores_from(c);
    out.counts += c;
    sum.precision += s.precision, sum.recall += s.recall, sum.f1 += s.f1;
    sum.iou += s.iou, sum.dice += s.dice, sum.accuracy += s.accuracy;
    // Walk the thresholds from the top bin down: TP_k, FP_k = pixels in bins >= k.
    const auto pos = counts.pos_hist(i), neg = counts.neg_hist(i);
    int64_t n_pos = 0;
    for (int64_t v : pos) n_pos += v;
    int64_t tp = 0, fp = 0;
    double ap = 0, prev_recall = 0, best_f = 0;
    for (int k = bins - 1; k >= 0; --k) {
      tp += pos[static_cast<std::size_t>(k)];
      fp += neg[static_cast<std::size_t>(k)];
      const int64_t fn = n_pos - tp;
      tp_k[static_cast<std::size_t>(k)] += tp;
      fp_k[static_cast<std::size_t>(k)] += fp;
      fn_k[static_cast<std::size_t>(k)] += fn;
      best_f = std::max(best_f, f_measure(tp, fp, fn));
      if (n_pos > 0 && tp + fp > 0) {
        const double recall = ratio(tp, n_pos);
        ap += (recall - prev_recall) * ratio(tp, tp + fp);
        prev_recall = recall;
      }
    }
    ois_sum += best_f;
    if (n_pos > 0) {
      ap_sum += ap;
      ++out.ap_images;
    }
  }
  out.images = static_cast<int64_t>(images.size());
  if (out.images > 0) {
    const double n = static_cast<double>(out.images);
    out.mean = {sum.precision / n, sum.recall / n, sum.f1 / n, sum.iou / n, sum.dice / n, sum.accuracy / n};
    out.ois = ois_sum / n;
    // ODS: the best shared threshold; on ties the lowest threshold reaching the maximum.
    out.ods = -1;
    for (int k = 0; k < bins; ++k) {
      const auto kk = static_cast<std::size_t>(k);
      const double f = f_measure(tp_k[kk], fp_k[kk], fn_k[kk]);
      if (f > out.ods) {
        out.ods = f;
        out.ods_threshold = static_cast<double>(k) / bins;
      }
    }
  }
  out.micro = scores_from(out.counts);
  out.map = out.ap_images > 0 ? ap_sum / static_cast<double>(out.ap_images) : 0.0;
  return out;
}

namespace {
// Image i's confusion at bin edge k: pixels in bins >= k are predicted crack.
Confusion confusion_at_bin(const MetricCounts& counts, int64_t i, int k) {
  const auto pos = counts.pos_hist(i), neg = counts.neg_hist(i);
  Confusion c;
  for (std::size_t b = 0; b < pos.size(); ++b) {
    const bool pred = static_cast<int>(b) >= k;
    (pred ? c.tp : c.fn) += pos[b];
    (pred ? c.fp : c.tn) += neg[b];
  }
  return c;
}
}  // namespace

ImageScores image_scores(const MetricCounts& counts, int64_t i) {
  ImageScores out;
  out.counts = counts.confusion(i);
  out.scores = scores_from(out.counts);
  out.crack_pixels = out.counts.tp + out.counts.fn;
  out.predicted_pixels = out.counts.tp + out.counts.fp;
  // The same walk as summarize(), so the mean over images is its map exactly.
  const int bins = counts.layout().bins;
  const auto pos = counts.pos_hist(i), neg = counts.neg_hist(i);
  int64_t n_pos = 0;
  for (int64_t v : pos) n_pos += v;
  int64_t tp = 0, fp = 0;
  double ap = 0, prev_recall = 0;
  for (int k = bins - 1; k >= 0; --k) {
    tp += pos[static_cast<std::size_t>(k)];
    fp += neg[static_cast<std::size_t>(k)];
    if (n_pos > 0 && tp + fp > 0) {
      const double recall = ratio(tp, n_pos);
      ap += (recall - prev_recall) * ratio(tp, tp + fp);
      prev_recall = recall;
    }
  }
  out.has_ap = n_pos > 0;
  out.ap = out.has_ap ? ap : 0.0;
  return out;
}

int best_mean_f1_bin(const MetricCounts& counts) {
  const int bins = counts.layout().bins;
  std::vector<double> f_sum(static_cast<std::size_t>(bins), 0.0);
  for (int64_t i = 0; i < counts.layout().num_images; ++i) {
    if (counts.times_added(i) == 0) continue;
    const auto pos = counts.pos_hist(i), neg = counts.neg_hist(i);
    int64_t n_pos = 0;
    for (int64_t v : pos) n_pos += v;
    int64_t tp = 0, fp = 0;
    for (int k = bins - 1; k >= 0; --k) {
      tp += pos[static_cast<std::size_t>(k)];
      fp += neg[static_cast<std::size_t>(k)];
      f_sum[static_cast<std::size_t>(k)] += scores_from(Confusion{tp, fp, n_pos - tp, 0}).f1;
    }
  }
  int best = 0;
  for (int k = 1; k < bins; ++k)
    if (f_sum[static_cast<std::size_t>(k)] > f_sum[static_cast<std::size_t>(best)]) best = k;
  return best;
}

MetricCounts rethreshold(const MetricCounts& counts, int bin) {
  MetricLayout layout = counts.layout();
  if (bin < 0 || bin >= layout.bins)
    throw Error("metrics: threshold bin " + std::to_string(bin) + " outside [0, " + std::to_string(layout.bins) + ")");
  layout.threshold = static_cast<double>(bin) / layout.bins;
  std::vector<int64_t> flat = counts.flat();
  const int64_t stride = counts.stride();
  for (int64_t i = 0; i < layout.num_images; ++i) {
    if (counts.times_added(i) == 0) continue;
    const Confusion c = confusion_at_bin(counts, i, bin);
    int64_t* r = flat.data() + i * stride;
    r[2] = c.tp, r[3] = c.fp, r[4] = c.fn, r[5] = c.tn;
  }
  return MetricCounts::from_flat(std::move(layout), std::move(flat));
}

MetricReport compute_metrics(const MetricCounts& counts) {
  const auto& layout = counts.layout();
  std::vector<int64_t> all;
  std::vector<std::vector<int64_t>> per_source(layout.sources.size());
  for (int64_t i = 0; i < layout.num_images; ++i) {
    const int64_t added = counts.times_added(i);
    if (added == 0) continue;
    if (added > 1)
      throw Error("metrics: image " + std::to_string(i) + " was evaluated " + std::to_string(added) +
                  " times (duplicated across ranks?)");
    const int s = counts.source(i);
    if (s < 0 || s >= static_cast<int>(layout.sources.size()))
      throw Error("metrics: image " + std::to_string(i) + " has source id " + std::to_string(s) + " (corrupt counts)");
    all.push_back(i);
    per_source[static_cast<std::size_t>(s)].push_back(i);
  }
  MetricReport r;
  r.all = summarize(counts, all);
  for (std::size_t s = 0; s < per_source.size(); ++s)
    if (!per_source[s].empty()) r.by_source[layout.sources[s]] = summarize(counts, per_source[s]);
  return r;
}

std::map<std::string, double> MetricSummary::scalars() const {
  return {{"precision", mean.precision},
          {"recall", mean.recall},
          {"f1", mean.f1},
          {"iou", mean.iou},
          {"dice", mean.dice},
          {"accuracy", mean.accuracy},
          {"micro_precision", micro.precision},
          {"micro_recall", micro.recall},
          {"micro_f1", micro.f1},
          {"micro_iou", micro.iou},
          {"micro_dice", micro.dice},
          {"micro_accuracy", micro.accuracy},
          {"map", map},
          {"ods", ods},
          {"ods_threshold", ods_threshold},
          {"ois", ois}};
}

nlohmann::json MetricSummary::to_json() const {
  nlohmann::json j(scalars());
  j["images"] = images;
  j["ap_images"] = ap_images;
  j["tp"] = counts.tp, j["fp"] = counts.fp, j["fn"] = counts.fn, j["tn"] = counts.tn;
  return j;
}

nlohmann::json MetricReport::to_json() const {
  nlohmann::json j;
  j["all"] = all.to_json();
  j["by_source"] = nlohmann::json::object();
  for (const auto& [name, s] : by_source) j["by_source"][name] = s.to_json();
  return j;
}

}  // namespace crackseg
