#include "kernels/cuda/gradient_sync.hpp"

#include <algorithm>
#include <chrono>

#include "kernels/cuda/context.hpp"

namespace crackseg::cuda {

DeviceGradientSync::DeviceGradientSync(NcclCommunicator& comm, std::vector<Param*> params,
                                       dist::GradientSyncOptions options, int64_t max_local_micro_batches)
    : comm_(comm), params_(std::move(params)), options_(options) {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Param* p = params_[i];
    if (!p) throw Error("DeviceGradientSync: parameter " + std::to_string(i) + " is null");
    if (!p->grad.defined() || p->grad.dtype() != DType::f32 || p->grad.device() != Device::cuda ||
        p->grad.numel() != p->value.numel())
      throw Error("DeviceGradientSync: parameter " + p->name + " needs an f32 cuda gradient with the value's " +
                  std::to_string(p->value.numel()) + " elements (host gradients use dist::GradientSync)");
  }
  // Same bucketing as dist::GradientSync: reverse parameter order, close at >= bucket_bytes.
  bucket_of_.resize(params_.size());
  Bucket cur;
  const auto close = [&] {
    if (cur.params.empty()) return;
    cur.done = make_event();
    bucket_params_.push_back(cur.params);
    max_bucket_ = std::max(max_bucket_, cur.numel);
    total_numel_ += cur.numel;
    buckets_.push_back(std::move(cur));
    cur = Bucket{};
  };
  for (std::size_t k = params_.size(); k-- > 0;) {
    bucket_of_[k] = buckets_.size();
    cur.params.push_back(k);
    cur.offsets.push_back(cur.numel);
    cur.numel += static_cast<std::size_t>(params_[k]->grad.numel());
    if (cur.numel * sizeof(float) >= options_.bucket_bytes) close();
  }
  close();
  for (auto& b : buckets_) b.not_ready = b.params.size();
  ready_.assign(params_.size(), false);
  if (options_.mode == dist::Determinism::bitwise) {
    stash_slots_ = std::max<int64_t>(max_local_micro_batches, 1);
    stash_ = DevicePtr(sizeof(float) * total_numel_ * static_cast<std::size_t>(stash_slots_));
  }
}

void DeviceGradientSync::start_bucket(std::size_t b) {
  Bucket& bk = buckets_[b];
  bk.started = true;
  if (comm_.size() == 1) return;
  comm_.enter();
  comm_.enqueue([&] {  // an enqueue that fails aborts the communicator before the throw
    NcclGroup group;     // closed on every path, before that abort
    for (std::size_t p : bk.params) {
      Tensor& g = params_[p]->grad;
      CRACKSEG_NCCL_CHECK(ncclAllReduce(g.raw(), g.raw(), static_cast<std::size_t>(g.numel()), ncclFloat32, ncclSum,
                                        comm_.get(), comm_.stream()));
    }
    group.end();
  });
  comm_.settle("allreduce of gradient bucket " + std::to_string(b) + " (enqueue)");
  CRACKSEG_CUDA_CHECK(cudaEventRecord(bk.done.get(), comm_.stream()));
  step_bytes_ += bk.numel * sizeof(float);
}

void DeviceGradientSync::mark_ready(std::size_t index) {
  if (options_.mode != dist::Determinism::fast) throw Error("DeviceGradientSync::mark_ready: only in fast mode");
  if (index >= params_.size())
    throw Error("DeviceGradientSync::mark_ready: index " + std::to_string(index) + " >= " +
                std::to_string(params_.size()));
  if (ready_[index]) throw Error("DeviceGradientSync::mark_ready: " + params_[index]->name + " marked twice in one step");
  ready_[index] = true;
  --buckets_[bucket_of_[index]].not_ready;
  for (std::size_t b = 0; b < buckets_.size() && (buckets_[b].started || buckets_[b].not_ready == 0); ++b)
    if (!buckets_[b].started) start_bucket(b);
}

void DeviceGradientSync::stash_micro_batch(int64_t global_index) {
  if (options_.mode != dist::Determinism::bitwise)
    throw Error("DeviceGradientSync::stash_micro_batch: only in bitwise mode");
  if (global_index < 0 || std::find(stashed_.begin(), stashed_.end(), global_index) != stashed_.end())
    throw Error("DeviceGradientSync::stash_micro_batch: micro-batch " + std::to_string(global_index) +
                " is negative or already stashed this step");
  auto& ctx = Context::get();
  const auto slot = static_cast<int64_t>(stashed_.size());
  if (slot >= stash_slots_) {  // grow, keeping what is stashed (once; later steps reuse it)
    DevicePtr bigger(sizeof(float) * total_numel_ * static_cast<std::size_t>(2 * stash_slots_));
    CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(bigger.get(), stash_.get(), stash_.bytes(), cudaMemcpyDeviceToDevice, ctx.stream()));
    ctx.synchronize();
    stash_ = std::move(bigger);
    stash_slots_ *= 2;
  }
  // Slot layout: bucket after bucket, each packed in its offsets order.
  float* dst = stash_.as<float>() + static_cast<std::size_t>(slot) * total_numel_;
  for (auto& bk : buckets_) {
    for (std::size_t j = 0; j < bk.params.size(); ++j) {
      Tensor& g = params_[bk.params[j]]->grad;
      CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(dst + bk.offsets[j], g.raw(), g.nbytes(), cudaMemcpyDeviceToDevice, ctx.stream()));
      CRACKSEG_CUDA_CHECK(cudaMemsetAsync(g.raw(), 0, g.nbytes(), ctx.stream()));
    }
    dst += bk.numel;
  }
  stashed_.push_back(global_index);
}

void DeviceGradientSync::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  if (options_.mode == dist::Determinism::fast) {
    for (std::size_t b = 0; b < buckets_.size(); ++b)
      if (!buckets_[b].started) start_bucket(b);
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      Bucket& bk = buckets_[b];
      if (comm_.size() > 1) {
        CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(Context::get().stream(), bk.done.get(), 0));
        comm_.wait(bk.done.get(), "allreduce of gradient bucket " + std::to_string(b));
      }
      bk.started = false;
      bk.not_ready = bk.params.size();
    }
    std::fill(ready_.begin(), ready_.end(), false);
  } else {
    finish_bitwise();
  }
  stats_.finish_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.buckets = buckets_.size();
  stats_.bytes_sent = step_bytes_;
  step_bytes_ = 0;
}

void DeviceGradientSync::finish_bitwise() {
  auto& ctx = Context::get();
  const auto size = static_cast<std::size_t>(comm_.size());
  const auto local = static_cast<int64_t>(stashed_.size());
  std::vector<int64_t> counts(size, 0);
  counts[static_cast<std::size_t>(comm_.rank())] = local;
  comm_.allreduce(counts, dist::ReduceOp::sum);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total == 0) throw Error("DeviceGradientSync::finish (bitwise): no rank stashed a micro-batch this step");
  std::vector<int64_t> order(static_cast<std::size_t>(total));
  comm_.allgatherv(stashed_, order, counts);
  // slot_of[g] = position of global micro-batch g in the gathered (rank-major) order.
  std::vector<int64_t> slot_of(order.size(), -1);
  for (std::size_t s = 0; s < order.size(); ++s) {
    const int64_t g = order[s];
    if (g < 0 || g >= total || slot_of[static_cast<std::size_t>(g)] != -1)
      throw Error("DeviceGradientSync::finish (bitwise): the ranks' micro-batch indices are not 0.." +
                  std::to_string(total - 1) + " each once (index " + std::to_string(g) + ")");
    slot_of[static_cast<std::size_t>(g)] = static_cast<int64_t>(s);
  }
  order_.reserve(sizeof(int64_t) * slot_of.size());
  CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(order_.get(), slot_of.data(), sizeof(int64_t) * slot_of.size(),
                                      cudaMemcpyHostToDevice, ctx.stream()));
  // One device area, sized once per (micro-batches per step): the gather target (total x
  // bucket), this rank's packed slots (local x bucket) and the bucket's sums.
  const std::size_t mb = max_bucket_;
  gathered_.reserve(sizeof(float) * (static_cast<std::size_t>(total) * mb + static_cast<std::size_t>(local) * mb + mb));
  float* gather = gathered_.as<float>();
  float* pack = gather + static_cast<std::size_t>(total) * mb;
  float* sum = pack + static_cast<std::size_t>(local) * mb;
  std::size_t bucket_base = 0;  // element offset of the bucket inside a stash slot
  std::vector<int64_t> bcounts(size);
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    Bucket& bk = buckets_[b];
    for (std::size_t r = 0; r < size; ++r) bcounts[r] = counts[r] * static_cast<int64_t>(bk.numel);
    // This rank's slots of bucket b are strided in the stash: pack them so one block goes out.
    for (int64_t s = 0; s < local; ++s)
      CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(pack + static_cast<std::size_t>(s) * bk.numel,
                                          stash_.as<float>() + static_cast<std::size_t>(s) * total_numel_ + bucket_base,
                                          sizeof(float) * bk.numel, cudaMemcpyDeviceToDevice, ctx.stream()));
    comm_.enter();
    comm_.enqueue_allgatherv(pack, gather, bcounts);
    sum_slots_in_order(gather, order_.as<int64_t>(), total, static_cast<int64_t>(bk.numel), sum, comm_.stream());
    comm_.leave(bk.done.get());
    comm_.wait(bk.done.get(), "allgatherv of gradient bucket " + std::to_string(b) + " (bitwise mode)");
    for (std::size_t j = 0; j < bk.params.size(); ++j) {
      Tensor& g = params_[bk.params[j]]->grad;
      CRACKSEG_CUDA_CHECK(cudaMemcpyAsync(g.raw(), sum + bk.offsets[j], g.nbytes(), cudaMemcpyDeviceToDevice, ctx.stream()));
    }
    step_bytes_ += static_cast<std::size_t>(local) * bk.numel * sizeof(float);
    bucket_base += bk.numel;
  }
  stashed_.clear();
}

}  // namespace crackseg::cuda
