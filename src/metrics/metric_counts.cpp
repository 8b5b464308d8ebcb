#include <algorithm>
#include <cmath>

#include "src/core/error.hpp"
#include "src/losses/parallel.hpp"
#include "src/metrics/metrics.hpp"

namespace crackseg {

MetricCounts::MetricCounts(MetricLayout layout) : layout_(std::move(layout)) {
  if (layout_.num_images < 0) throw InputError("metrics: negative image count");
  if (layout_.bins < 1) throw InputError("[eval] bins = " + std::to_string(layout_.bins) + ": must be >= 1");
  if (!(layout_.threshold >= 0 && layout_.threshold <= 1))
    throw InputError("[eval] threshold = " + std::to_string(layout_.threshold) + ": must be in [0, 1]");
  if (layout_.sources.empty()) layout_.sources = {"all"};
  data_.assign(static_cast<std::size_t>(layout_.num_images * stride()), 0);
}

MetricCounts MetricCounts::from_flat(MetricLayout layout, std::vector<int64_t> flat) {
  MetricCounts m(std::move(layout));
  if (flat.size() != m.data_.size())
    throw Error("metrics: flat counts have " + std::to_string(flat.size()) + " values, the layout (" +
                std::to_string(m.layout_.num_images) + " images, " + std::to_string(m.layout_.bins) +
                " bins) needs " + std::to_string(m.data_.size()));
  m.data_ = std::move(flat);
  return m;
}

void MetricCounts::merge(const MetricCounts& o) {
  if (o.layout_.num_images != layout_.num_images || o.layout_.bins != layout_.bins ||
      o.layout_.threshold != layout_.threshold || o.layout_.sources != layout_.sources)
    throw Error("metrics: cannot merge accumulators with different layouts");
  for (std::size_t i = 0; i < data_.size(); ++i) data_[i] += o.data_[i];
}

const int64_t* MetricCounts::record(int64_t image) const {
  if (image < 0 || image >= layout_.num_images)
    throw Error("metrics: image index " + std::to_string(image) + " outside [0, " +
                std::to_string(layout_.num_images) + ")");
  return data_.data() + image * stride();
}

Confusion MetricCounts::confusion(int64_t image) const {
  const int64_t* r = record(image);
  return {r[2], r[3], r[4], r[5]};
}

int64_t* MetricCounts::claim(int64_t index, int source) {
  int64_t* r = const_cast<int64_t*>(record(index));
  if (source < 0 || source >= static_cast<int>(layout_.sources.size()))
    throw Error("metrics: source id " + std::to_string(source) + " of image " + std::to_string(index) +
                " outside the " + std::to_string(layout_.sources.size()) + " known sources");
  if (r[0] != 0) throw Error("metrics: image " + std::to_string(index) + " evaluated twice");
  r[0] = 1;
  r[1] = source + 1;
  return r;
}

namespace {
inline bool is_crack(uint8_t m) { return m != 0; }
inline bool is_crack(float m) { return m > 0.5f; }
}  // namespace

template <typename M>
void MetricCounts::count(int64_t* rec, std::span<const float> prob, std::span<const M> mask) const {
  const int bins = layout_.bins;
  const double t = layout_.threshold;
  int64_t* pos = rec + 6;
  int64_t* neg = rec + 6 + bins;
  int64_t tp = 0, fp = 0, fn = 0, tn = 0;
  for (std::size_t i = 0; i < prob.size(); ++i) {
    const double p = std::isnan(prob[i]) ? 0.0 : std::clamp(static_cast<double>(prob[i]), 0.0, 1.0);
    const bool pred = p >= t, truth = is_crack(mask[i]);
    tp += pred && truth;
    fp += pred && !truth;
    fn += !pred && truth;
    tn += !pred && !truth;
    const int b = std::min(bins - 1, static_cast<int>(p * bins));
    ++(truth ? pos : neg)[b];
  }
  rec[2] += tp, rec[3] += fp, rec[4] += fn, rec[5] += tn;
}

void MetricCounts::add_image(int64_t index, int source, std::span<const float> prob, std::span<const uint8_t> mask) {
  if (prob.size() != mask.size())
    throw InputError("metrics: image " + std::to_string(index) + " has " + std::to_string(prob.size()) +
                     " probabilities but " + std::to_string(mask.size()) + " mask pixels");
  count(claim(index, source), prob, mask);
}

void MetricCounts::add_image(int64_t index, int source, std::span<const float> prob, std::span<const float> mask) {
  if (prob.size() != mask.size())
    throw InputError("metrics: image " + std::to_string(index) + " has " + std::to_string(prob.size()) +
                     " probabilities but " + std::to_string(mask.size()) + " mask pixels");
  count(claim(index, source), prob, mask);
}

void MetricCounts::add_batch(const Tensor& prob, const Tensor& target, std::span<const int64_t> indices,
                             std::span<const int> sources) {
  if (prob.dtype() != DType::f32 || prob.device() != Device::cpu)
    throw InputError("metrics: probabilities must be an f32 CPU tensor");
  if (target.device() != Device::cpu || (target.dtype() != DType::f32 && target.dtype() != DType::u8))
    throw InputError("metrics: target must be a u8 or f32 CPU tensor");
  target.expect_dims(prob.dims(), "metrics target");
  if (prob.rank() < 1) throw InputError("metrics: probabilities need a batch dimension");
  const int64_t n = prob.dim(0);
  // Per-image pixels are contiguous in every format; their order must agree between the two
  // tensors, which holds for one channel or equal formats.
  const bool one_channel = prob.rank() != 4 || prob.dim(1) == 1;
  if (!one_channel && prob.format() != target.format())
    throw InputError(std::string("metrics: probabilities (") + to_string(prob.format()) + ") and target (" +
                     to_string(target.format()) + ") must share a memory format when C > 1");
  if (static_cast<int64_t>(indices.size()) != n || static_cast<int64_t>(sources.size()) != n)
    throw InputError("metrics: batch of " + std::to_string(n) + " items with " + std::to_string(indices.size()) +
                     " indices and " + std::to_string(sources.size()) + " source ids");
  // Claim serially (checks and duplicate detection), then count the images in parallel: each
  // iteration writes only its own record, and integer sums are exact in any order.
  std::vector<int64_t*> recs(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    recs[static_cast<std::size_t>(i)] = claim(indices[static_cast<std::size_t>(i)], sources[static_cast<std::size_t>(i)]);
  const int64_t per = n > 0 ? prob.numel() / n : 0;
  const float* p = prob.data<float>();
  par::for_each("metrics::count_images", n, [&](int64_t i) {
    const std::span<const float> pi(p + i * per, static_cast<std::size_t>(per));
    if (target.dtype() == DType::u8)
      count(recs[static_cast<std::size_t>(i)], pi,
            std::span<const uint8_t>(target.data<uint8_t>() + i * per, static_cast<std::size_t>(per)));
    else
      count(recs[static_cast<std::size_t>(i)], pi,
            std::span<const float>(target.data<float>() + i * per, static_cast<std::size_t>(per)));
  }, /*serial_below=*/2);
}

}  // namespace crackseg
