#include "src/train/batch_stats_sync.hpp"

#include <span>

#include "src/core/error.hpp"

namespace crackseg::train {

BatchStatsSync::BatchStatsSync(dist::Communicator& comm, Graph& master)
    : comm_(comm), master_(master), size_(master.batch_stats_size()) {}

void BatchStatsSync::stash(int64_t global_index, const Graph& from) {
  if (!active()) return;
  if (from.batch_stats_size() != size_)
    throw Error("BatchStatsSync: a replica with " + std::to_string(from.batch_stats_size()) +
                " batch statistics for a model with " + std::to_string(size_));
  ids_.push_back(global_index);
  local_.resize(ids_.size() * size_);
  from.read_batch_stats(std::span<float>(local_).subspan((ids_.size() - 1) * size_, size_));
}

void BatchStatsSync::finish() {
  if (!active()) return;
  // Scratch kept across steps: a steady-state step allocates nothing here.
  const auto R = static_cast<std::size_t>(comm_.size());
  counts_.assign(R, 0);
  counts_[static_cast<std::size_t>(comm_.rank())] = static_cast<int64_t>(ids_.size());
  if (R > 1) comm_.allreduce(counts_, dist::ReduceOp::sum);
  int64_t total = 0;
  for (int64_t c : counts_) total += c;
  const std::vector<int64_t>* order = &ids_;
  const std::vector<float>* stats = &local_;
  if (R > 1) {
    order_.resize(static_cast<std::size_t>(total));
    comm_.allgatherv(ids_, order_, counts_);
    fcounts_.resize(R);
    for (std::size_t r = 0; r < R; ++r) fcounts_[r] = counts_[r] * static_cast<int64_t>(size_);
    // A fresh buffer only if an abandoned (timed-out) gather may still write into the old one.
    if (!gathered_ || gathered_.use_count() > 1) gathered_ = std::make_shared<std::vector<float>>();
    gathered_->resize(static_cast<std::size_t>(total) * size_);
    comm_.start_allgatherv(local_, *gathered_, fcounts_, gathered_, "allgatherv of batchnorm batch statistics")->wait();
    order = &order_;
    stats = gathered_.get();
  }
  // slot_of_[g] = where global micro-batch g sits in the gathered (rank-major) order.
  const std::size_t n = order->size();
  slot_of_.assign(n, n);
  for (std::size_t s = 0; s < n; ++s) {
    const int64_t g = (*order)[s];
    if (g < 0 || g >= total || slot_of_[static_cast<std::size_t>(g)] != n)
      throw Error("BatchStatsSync: the ranks' micro-batch indices are not 0.." + std::to_string(total - 1) +
                  " each once (index " + std::to_string(g) + ")");
    slot_of_[static_cast<std::size_t>(g)] = s;
  }
  for (std::size_t g = 0; g < n; ++g)
    master_.apply_batch_stats(std::span<const float>(*stats).subspan(slot_of_[g] * size_, size_));
  ids_.clear();
  local_.clear();
}

}  // namespace crackseg::train
