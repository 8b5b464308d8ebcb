#include "src/train/batches.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "io/dataset/dataset.hpp"
#include "io/patch/patch.hpp"
#include "io/reader/sharded_reader.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"

namespace crackseg::train {

namespace {

// Resizes `t` to dims only when they change, so steady-state steps allocate nothing.
void ensure(Tensor& t, const Dims& dims, Format f) {
  if (!t.defined() || t.dims() != dims || t.format() != f) t = Tensor::empty(dims, DType::f32, f);
}

std::vector<uint32_t> limit(std::vector<uint32_t> v, int64_t max) {
  if (max > 0 && static_cast<int64_t>(v.size()) > max) v.resize(static_cast<std::size_t>(max));
  return v;
}

class SegmentationBatches final : public TrainBatches {
 public:
  SegmentationBatches(const nlohmann::json& cfg, const BatchLayout& l) {
    const auto& data = cfg.at("data");
    io::ReaderConfig rc;
    rc.path = data.at("path").get<std::string>();
    rc.split = data.at("train_split").get<std::string>();
    rc.max_samples = data.at("max_train").get<int64_t>();  // the first N, as the patch CNN's images
    rc.mode = io::ReaderMode::train;
    rc.rank = l.rank;
    rc.world = l.world;
    rc.seed = l.seed;
    rc.global_batch = l.global_batch;
    rc.micro_batch = l.micro_batch;
    rc.augment.enabled = data.at("augment").get<bool>();
    rc.augment.crop = static_cast<int>(data.at("crop").get<int64_t>());
    rc.prefetch = std::max<int>(1, static_cast<int>(data.at("prefetch").get<int64_t>()));
    reader_ = std::make_unique<io::ShardedReader>(rc);
  }
  uint64_t steps_per_epoch() const override { return reader_->steps_per_epoch(); }
  int micro_batches_per_step() const override { return reader_->micro_batches_per_step(); }
  void start_epoch(uint64_t epoch, uint64_t first_step) override { reader_->start_epoch(epoch, first_step); }
  bool next(Batch& b) override {
    if (!reader_->next(mb_)) return false;
    const int64_t m = mb_.count, H = mb_.height, W = mb_.width;
    ensure(b.images, {m, 3, H, W}, Format::nhwc);
    ensure(b.targets, {m, 1, H, W}, Format::nchw);
    std::memcpy(b.images.raw(), mb_.images.data(), mb_.images.size() * sizeof(float));
    float* t = b.targets.data<float>();
    for (std::size_t i = 0; i < mb_.masks.size(); ++i) t[i] = static_cast<float>(mb_.masks[i]);
    b.sample_ids.assign(mb_.indices.begin(), mb_.indices.end());
    b.step = mb_.step;
    b.micro = mb_.micro;
    return true;
  }

 private:
  std::unique_ptr<io::ShardedReader> reader_;
  io::MicroBatch mb_;
};

class PatchBatches final : public TrainBatches {
 public:
  PatchBatches(const nlohmann::json& cfg, const BatchLayout& l) : layout_(l) {
    const auto& data = cfg.at("data");
    const auto& model = cfg.at("model");
    file_ = std::make_unique<io::DatasetFile>(data.at("path").get<std::string>());
    images_ = limit(file_->split(data.at("train_split").get<std::string>()), data.at("max_train").get<int64_t>());
    pc_.h = static_cast<int>(model.value("h", int64_t{13}));
    pc_.s = static_cast<int>(model.value("s", int64_t{2}));
    pc_.context = model.value("padding", std::string("same")) == "context";
    pc_.ratio = static_cast<double>(data.at("patch_ratio").get<int64_t>());
    // Patches of a micro-batch come from a few images at a time (the list is permuted, so
    // any image can appear): keep at most 64 padded images (~45 MB at 400x400), not all.
    sampler_ = std::make_unique<io::PatchSampler>(pc_, io::PatchSampler::file_loader(*file_), file_->height(),
                                                  file_->width(), std::min<std::size_t>(images_.size() + 1, 64));
    if (l.global_batch % (l.world * l.micro_batch) != 0)
      throw InputError("train.batch=" + std::to_string(l.global_batch) + " is not a multiple of ranks (" +
                       std::to_string(l.world) + ") x train.micro_batch (" + std::to_string(l.micro_batch) + ")");
    micro_per_step_ = l.global_batch / (l.world * l.micro_batch);
    // Epoch 0's list fixes steps_per_epoch for progress/ETA; later epochs may differ slightly
    // (background draws differ) and use their own count.
    enumerate(0);
  }
  uint64_t steps_per_epoch() const override { return samples_.size() / static_cast<uint64_t>(layout_.global_batch); }
  int micro_batches_per_step() const override { return micro_per_step_; }
  void start_epoch(uint64_t epoch, uint64_t first_step) override {
    if (epoch != enumerated_epoch_) enumerate(epoch);
    step_ = first_step;
    micro_ = 0;
  }
  bool next(Batch& b) override {
    if (step_ >= steps_per_epoch()) return false;
    const int64_t m = layout_.micro_batch, side = pc_.patch_side(), K = pc_.label_count();
    const uint64_t B = static_cast<uint64_t>(layout_.global_batch);
    // Rank r's k-th micro-batch of step t is global micro-batch g = k*R + r (io::train_shard's rule).
    const uint64_t g = static_cast<uint64_t>(micro_) * static_cast<uint64_t>(layout_.world) +
                       static_cast<uint64_t>(layout_.rank);
    const uint64_t first = step_ * B + g * static_cast<uint64_t>(m);
    batch_.clear();
    b.sample_ids.clear();
    for (int64_t i = 0; i < m; ++i) {
      const uint64_t pos = first + static_cast<uint64_t>(i);
      batch_.push_back(samples_[perm_[pos]]);
      b.sample_ids.push_back(pos);
    }
    ensure(b.images, {m, 3, side, side}, Format::nhwc);
    if (!b.targets.defined() || b.targets.dims() != Dims{m, K}) b.targets = Tensor::empty({m, K});
    sampler_->fill_batch(batch_, b.images.span<float>(), b.targets.span<float>());
    b.step = step_;
    b.micro = micro_;
    if (++micro_ == micro_per_step_) {
      micro_ = 0;
      ++step_;
    }
    return true;
  }

 private:
  void enumerate(uint64_t epoch) {
    samples_ = io::enumerate_patch_samples(pc_, layout_.seed, epoch, *file_, images_);
    if (samples_.size() < static_cast<std::size_t>(layout_.global_batch))
      throw InputError("patch CNN: the training images of " + file_->path().string() + " give " +
                       std::to_string(samples_.size()) + " patches, fewer than train.batch=" +
                       std::to_string(layout_.global_batch));
    perm_ = epoch_permutation(layout_.seed, epoch, static_cast<uint32_t>(samples_.size()));
    enumerated_epoch_ = epoch;
  }

  BatchLayout layout_;
  std::unique_ptr<io::DatasetFile> file_;
  std::vector<uint32_t> images_;
  io::PatchConfig pc_;
  std::unique_ptr<io::PatchSampler> sampler_;
  std::vector<io::PatchSample> samples_, batch_;
  std::vector<uint32_t> perm_;
  uint64_t enumerated_epoch_ = UINT64_MAX;
  int micro_per_step_ = 1;
  uint64_t step_ = 0;
  int micro_ = 0;
};

}  // namespace

std::unique_ptr<TrainBatches> make_segmentation_batches(const nlohmann::json& cfg, const BatchLayout& layout) {
  return std::make_unique<SegmentationBatches>(cfg, layout);
}
std::unique_ptr<TrainBatches> make_patch_batches(const nlohmann::json& cfg, const BatchLayout& layout) {
  return std::make_unique<PatchBatches>(cfg, layout);
}

}  // namespace crackseg::train
