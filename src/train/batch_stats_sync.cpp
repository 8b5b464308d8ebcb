#include "src/train/batch_stats_sync.hpp"

#include <memory>
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
  const auto R = static_cast<std::size_t>(comm_.size());
  std::vector<int64_t> counts(R, 0);
  counts[static_cast<std::size_t>(comm_.rank())] = static_cast<int64_t>(ids_.size());
  if (R > 1) comm_.allreduce(counts, dist::ReduceOp::sum);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  std::vector<int64_t> order = ids_;
  auto all = std::make_shared<std::vector<float>>(local_);
  if (R > 1) {
    order.assign(static_cast<std::size_t>(total), 0);
    comm_.allgatherv(ids_, order, counts);
    std::vector<int64_t> fcounts(R);
    for (std::size_t r = 0; r < R; ++r) fcounts[r] = counts[r] * static_cast<int64_t>(size_);
    all->assign(static_cast<std::size_t>(total) * size_, 0.0f);
    comm_.start_allgatherv(local_, *all, fcounts, all, "allgatherv of batchnorm batch statistics")->wait();
  }
  // slot_of[g] = where global micro-batch g sits in the gathered (rank-major) order.
  std::vector<std::size_t> slot_of(order.size(), order.size());
  for (std::size_t s = 0; s < order.size(); ++s) {
    const int64_t g = order[s];
    if (g < 0 || g >= total || slot_of[static_cast<std::size_t>(g)] != order.size())
      throw Error("BatchStatsSync: the ranks' micro-batch indices are not 0.." + std::to_string(total - 1) +
                  " each once (index " + std::to_string(g) + ")");
    slot_of[static_cast<std::size_t>(g)] = s;
  }
  for (std::size_t g = 0; g < slot_of.size(); ++g)
    master_.apply_batch_stats(std::span<const float>(*all).subspan(slot_of[g] * size_, size_));
  ids_.clear();
  local_.clear();
}

}  // namespace crackseg::train
