#include "io/reader/sharded_reader.hpp"

#include <hdf5.h>

#include <algorithm>
#include <string>
#include <utility>

#include "io/dataset/dataset.hpp"
#include "src/core/error.hpp"
#include "src/core/rng.hpp"

namespace crackseg::io {
namespace {

std::string s(int64_t v) { return std::to_string(v); }

void check_world(int world, int rank) {
  if (world < 1 || rank < 0 || rank >= world)
    throw InputError("reader: rank " + s(rank) + " is not in [0, world size " + s(world) + ")");
}

// Validates the training geometry and returns the number of global steps per epoch.
uint64_t train_steps(size_t n, int B, int m, int R, const std::string& split) {
  if (m < 1 || B < 1)
    throw InputError("reader: global batch (" + s(B) + ") and micro-batch (" + s(m) + ") must be >= 1");
  if (B % (static_cast<int64_t>(R) * m) != 0)
    throw InputError("reader: global batch B=" + s(B) + " is not divisible by ranks R=" + s(R) +
                     " x micro-batch m=" + s(m) + " (B must be R*m*a for an integer number a of "
                     "accumulation steps)");
  if (n < static_cast<size_t>(B))
    throw InputError("reader: split '" + split + "' holds " + s(static_cast<int64_t>(n)) +
                     " samples, fewer than one global batch B=" + s(B));
  return n / static_cast<size_t>(B);
}

}  // namespace

bool hdf5_is_threadsafe() {
  hbool_t ts = 0;
  if (H5is_library_threadsafe(&ts) < 0) return false;
  return ts != 0;
}

std::vector<uint32_t> train_shard(const std::vector<uint32_t>& split, uint64_t seed, uint64_t epoch,
                                  int global_batch, int micro_batch, int world, int rank) {
  check_world(world, rank);
  const uint64_t steps = train_steps(split.size(), global_batch, micro_batch, world, "(given)");
  const auto perm = epoch_permutation(seed, epoch, static_cast<uint32_t>(split.size()));
  const int a = global_batch / (world * micro_batch);
  std::vector<uint32_t> out;
  out.reserve(steps * static_cast<uint64_t>(a * micro_batch));
  for (uint64_t t = 0; t < steps; ++t)
    for (int k = 0; k < a; ++k) {
      const uint64_t first = t * static_cast<uint64_t>(global_batch) +
                             static_cast<uint64_t>(k * world + rank) * static_cast<uint64_t>(micro_batch);
      for (int i = 0; i < micro_batch; ++i) out.push_back(split[perm[first + static_cast<uint64_t>(i)]]);
    }
  return out;
}

std::vector<uint32_t> eval_shard(const std::vector<uint32_t>& split, int world, int rank) {
  check_world(world, rank);
  const uint64_t n = split.size();
  const auto begin = static_cast<ptrdiff_t>(static_cast<uint64_t>(rank) * n / static_cast<uint64_t>(world));
  const auto end = static_cast<ptrdiff_t>(static_cast<uint64_t>(rank + 1) * n / static_cast<uint64_t>(world));
  return {split.begin() + begin, split.begin() + end};
}

ShardedReader::ShardedReader(ReaderConfig cfg) : cfg_(std::move(cfg)) {
  check_world(cfg_.world, cfg_.rank);
  if (cfg_.prefetch < 1) throw InputError("reader: prefetch depth must be >= 1, got " + s(cfg_.prefetch));
  if (cfg_.workers < 1) throw InputError("reader: prefetch workers must be >= 1, got " + s(cfg_.workers));
  if (cfg_.micro_batch < 1) throw InputError("reader: micro-batch must be >= 1, got " + s(cfg_.micro_batch));
  file_ = std::make_unique<DatasetFile>(cfg_.path);
  split_ = file_->split(cfg_.split);
  if (cfg_.max_samples > 0 && static_cast<int64_t>(split_.size()) > cfg_.max_samples)
    split_.resize(static_cast<size_t>(cfg_.max_samples));
  H_ = file_->height();
  W_ = file_->width();
  if (cfg_.mode == ReaderMode::train) {
    steps_ = train_steps(split_.size(), cfg_.global_batch, cfg_.micro_batch, cfg_.world,
                         cfg_.split + "' of '" + cfg_.path.string());
    micro_per_step_ = cfg_.global_batch / (cfg_.world * cfg_.micro_batch);
    (void)draw_augment_params(cfg_.augment, 0, 0, 0, H_, W_);  // rejects a crop that does not fit
    out_h_ = augment_out_h(cfg_.augment, H_);
    out_w_ = augment_out_w(cfg_.augment, W_);
  } else {
    steps_ = 1;
    const size_t local = eval_shard(split_, cfg_.world, cfg_.rank).size();
    micro_per_step_ = static_cast<int>((local + static_cast<size_t>(cfg_.micro_batch) - 1) /
                                       static_cast<size_t>(cfg_.micro_batch));
    out_h_ = H_;
    out_w_ = W_;
  }
}

ShardedReader::~ShardedReader() { stop_workers(); }

void ShardedReader::stop_workers() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void ShardedReader::start_epoch(uint64_t epoch, uint64_t first_step) {
  stop_workers();
  std::vector<Job> jobs;
  const size_t m = static_cast<size_t>(cfg_.micro_batch);
  if (cfg_.mode == ReaderMode::train) {
    if (first_step > steps_)
      throw InputError("reader: resume step " + std::to_string(first_step) + " is past the epoch's " +
                       std::to_string(steps_) + " steps");
    // The rank's share of the whole epoch, cut back into its (t, k) micro-batches.
    const auto mine = train_shard(split_, cfg_.seed, epoch, cfg_.global_batch, cfg_.micro_batch, cfg_.world,
                                  cfg_.rank);
    for (uint64_t t = first_step; t < steps_; ++t)
      for (int k = 0; k < micro_per_step_; ++k) {
        const size_t first = (t * static_cast<uint64_t>(micro_per_step_) + static_cast<uint64_t>(k)) * m;
        jobs.push_back({t, k, {mine.begin() + static_cast<ptrdiff_t>(first),
                               mine.begin() + static_cast<ptrdiff_t>(first + m)}});
      }
  } else {
    const auto mine = eval_shard(split_, cfg_.world, cfg_.rank);
    for (size_t first = 0, b = 0; first < mine.size(); first += m, ++b)
      jobs.push_back({b, 0, {mine.begin() + static_cast<ptrdiff_t>(first),
                             mine.begin() + static_cast<ptrdiff_t>(std::min(first + m, mine.size()))}});
  }
  // No worker runs here, so the epoch state can be replaced without the lock.
  const auto depth = static_cast<size_t>(cfg_.prefetch);
  for (size_t i = 0; i < slots_.size(); ++i)  // keep the buffers of a cancelled epoch's batches
    if (full_[i]) free_.push_back(std::move(slots_[i]));
  slots_.resize(depth);
  full_.assign(depth, 0);
  epoch_ = epoch;
  jobs_ = std::move(jobs);
  claimed_ = consumed_ = 0;
  stop_ = false;
  error_ = nullptr;
  const int nthreads = std::min<int>(cfg_.workers, static_cast<int>(std::max<size_t>(1, jobs_.size())));
  for (int i = 0; i < nthreads; ++i) threads_.emplace_back([this] { worker(); });
}

bool ShardedReader::next(MicroBatch& out) {
  std::unique_lock lk(mu_);
  const size_t depth = slots_.size();
  // Jobs before a failed one were claimed before it and still complete, so every good
  // micro-batch is handed out before the error is rethrown in its place.
  cv_.wait(lk, [&] {
    return consumed_ == jobs_.size() || full_[consumed_ % depth] || (error_ && consumed_ == error_job_);
  });
  if (consumed_ == jobs_.size()) return false;
  const size_t s = consumed_ % depth;
  if (!full_[s]) std::rethrow_exception(error_);
  std::swap(out, slots_[s]);
  free_.push_back(std::move(slots_[s]));
  full_[s] = 0;
  ++consumed_;
  lk.unlock();
  cv_.notify_all();
  return true;
}

void ShardedReader::worker() {
  // Raw sample buffers, reused for every sample of the epoch.
  std::vector<uint8_t> img(file_->image_bytes()), msk(file_->mask_bytes());
  const size_t depth = slots_.size();
  for (;;) {
    size_t j = 0;
    MicroBatch mb;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || error_ || claimed_ == jobs_.size() || claimed_ < consumed_ + depth; });
      if (stop_ || error_ || claimed_ == jobs_.size()) return;
      j = claimed_++;
      if (!free_.empty()) {
        mb = std::move(free_.back());
        free_.pop_back();
      }
    }
    try {
      fill(jobs_[j], mb, img, msk);
    } catch (...) {
      {
        std::lock_guard lk(mu_);
        if (!error_ || j < error_job_) {  // the consumer meets the earliest failure first
          error_ = std::current_exception();
          error_job_ = j;
        }
      }
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard lk(mu_);
      slots_[j % depth] = std::move(mb);
      full_[j % depth] = 1;
    }
    cv_.notify_all();
  }
}

void ShardedReader::fill(const Job& job, MicroBatch& mb, std::vector<uint8_t>& img,
                         std::vector<uint8_t>& msk) const {
  const uint64_t epoch = epoch_;
  const size_t n = job.samples.size(), px = static_cast<size_t>(out_h_) * static_cast<size_t>(out_w_);
  mb.epoch = epoch;
  mb.step = job.step;
  mb.micro = job.micro;
  mb.count = static_cast<int>(n);
  mb.height = out_h_;
  mb.width = out_w_;
  mb.images.resize(n * px * 3);  // within capacity after the first epoch: no allocation
  mb.masks.resize(n * px);
  mb.indices.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t idx = job.samples[i];
    file_->read_image(idx, img.data());
    file_->read_mask(idx, msk.data());
    mb.indices[i] = idx;
    const std::span<float> oi(mb.images.data() + i * px * 3, px * 3);
    const std::span<uint8_t> om(mb.masks.data() + i * px, px);
    if (cfg_.mode == ReaderMode::train) {
      augment_sample(cfg_.augment, cfg_.seed, epoch, idx, img, msk, H_, W_, oi, om);
    } else {
      for (size_t j = 0; j < px * 3; ++j) oi[j] = static_cast<float>(img[j]) / 255.0f;  // as augment's identity
      std::copy(msk.begin(), msk.end(), om.begin());
    }
  }
}

}  // namespace crackseg::io
