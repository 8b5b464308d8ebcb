#include "src/dist/gradient_sync.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace crackseg::dist {

Determinism parse_determinism(const std::string& s) {
  if (s == "fast") return Determinism::fast;
  if (s == "bitwise") return Determinism::bitwise;
  throw InputError("train.determinism = \"" + s + "\" is not one of fast | bitwise");
}

struct GradientSync::Bucket {
  std::vector<std::size_t> params;
  std::vector<std::size_t> offsets;  // element offset of each param in the packed bucket
  std::size_t numel = 0;
  std::size_t not_ready = 0;         // fast: params not yet marked this step
  bool started = false;
  std::shared_ptr<std::vector<float>> flat;   // fast: packed grads, summed in place
  std::shared_ptr<std::vector<float>> stash;  // bitwise: [local micro-batch][numel]
  std::unique_ptr<PendingOp> op;
};

namespace {
std::string mib(std::size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}
}  // namespace

GradientSync::GradientSync(Communicator& comm, std::vector<Param*> params, GradientSyncOptions options)
    : comm_(comm), params_(std::move(params)), options_(options) {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const Param* p = params_[i];
    if (!p) throw Error("GradientSync: parameter " + std::to_string(i) + " is null");
    if (!p->grad.defined() || p->grad.dtype() != DType::f32 || p->grad.device() != Device::cpu ||
        p->grad.numel() != p->value.numel())
      throw Error("GradientSync: parameter " + p->name + " needs an f32 host gradient with the value's " +
                  std::to_string(p->value.numel()) + " elements (the " + comm_.name() +
                  " communicator reduces host memory; device gradients use the CUDA backend's sync)");
  }
  // Reverse parameter order: the first bucket fills with the gradients backward finishes first.
  bucket_of_.resize(params_.size());
  std::unique_ptr<Bucket> cur;
  const auto close = [&] {
    if (!cur) return;
    bucket_params_.push_back(cur->params);
    buckets_.push_back(std::move(cur));
  };
  for (std::size_t k = params_.size(); k-- > 0;) {
    if (!cur) cur = std::make_unique<Bucket>();
    bucket_of_[k] = buckets_.size();
    cur->params.push_back(k);
    cur->offsets.push_back(cur->numel);
    cur->numel += static_cast<std::size_t>(params_[k]->grad.numel());
    if (cur->numel * sizeof(float) >= options_.bucket_bytes) close();
  }
  close();
  for (auto& b : buckets_) {
    b->not_ready = b->params.size();
    if (options_.mode == Determinism::fast)
      b->flat = std::make_shared<std::vector<float>>(b->numel);
    else
      b->stash = std::make_shared<std::vector<float>>();
  }
  ready_.assign(params_.size(), false);
}

GradientSync::~GradientSync() = default;

void GradientSync::start_bucket(std::size_t b) {
  Bucket& bk = *buckets_[b];
  bk.started = true;
  if (comm_.size() == 1) return;  // the local gradient is already the sum
  float* flat = bk.flat->data();
  for (std::size_t j = 0; j < bk.params.size(); ++j) {
    const Tensor& g = params_[bk.params[j]]->grad;
    std::memcpy(flat + bk.offsets[j], g.data<float>(), g.nbytes());
  }
  bk.op = comm_.start_allreduce_sum(*bk.flat, bk.flat,
                                    "allreduce of gradient bucket " + std::to_string(b) + " (" +
                                        mib(bk.numel * sizeof(float)) + ", " + params_[bk.params.front()]->name +
                                        " .. " + params_[bk.params.back()]->name + ")");
  step_bytes_ += bk.numel * sizeof(float);
}

void GradientSync::mark_ready(std::size_t index) {
  if (options_.mode != Determinism::fast) throw Error("GradientSync::mark_ready: only in fast mode");
  if (index >= params_.size())
    throw Error("GradientSync::mark_ready: index " + std::to_string(index) + " >= " + std::to_string(params_.size()));
  if (ready_[index]) throw Error("GradientSync::mark_ready: " + params_[index]->name + " marked twice in one step");
  ready_[index] = true;
  --buckets_[bucket_of_[index]]->not_ready;
  // Collectives must start in the same order on every rank, so bucket b starts only after
  // buckets 0..b-1, whatever order the graph finished its gradients in.
  for (std::size_t b = 0; b < buckets_.size() && (buckets_[b]->started || buckets_[b]->not_ready == 0); ++b)
    if (!buckets_[b]->started) start_bucket(b);
  // MPI progresses non-blocking collectives only inside MPI calls; poke the ones in flight.
  for (auto& bk : buckets_)
    if (bk->op) (void)bk->op->test();
}

std::size_t GradientSync::started_buckets() const {
  return static_cast<std::size_t>(std::count_if(buckets_.begin(), buckets_.end(), [](const auto& b) { return b->started; }));
}

void GradientSync::stash_micro_batch(int64_t global_index) { stash_micro_batch(global_index, params_); }

void GradientSync::stash_micro_batch(int64_t global_index, std::span<Param* const> from) {
  if (from.size() != params_.size())
    throw Error("GradientSync::stash_micro_batch: " + std::to_string(from.size()) + " parameters for " +
                std::to_string(params_.size()));
  for (std::size_t i = 0; i < from.size(); ++i)
    if (!from[i] || from[i]->grad.numel() != params_[i]->grad.numel() || from[i]->grad.dtype() != DType::f32 ||
        from[i]->grad.device() != Device::cpu)
      throw Error("GradientSync::stash_micro_batch: parameter " + params_[i]->name +
                  " of the replica does not match the model's");
  if (options_.mode != Determinism::bitwise) throw Error("GradientSync::stash_micro_batch: only in bitwise mode");
  if (global_index < 0 || std::find(stashed_.begin(), stashed_.end(), global_index) != stashed_.end())
    throw Error("GradientSync::stash_micro_batch: micro-batch " + std::to_string(global_index) +
                " is negative or already stashed this step");
  const std::size_t slot = stashed_.size();
  for (auto& bk : buckets_) {
    bk->stash->resize((slot + 1) * bk->numel);
    float* dst = bk->stash->data() + slot * bk->numel;
    for (std::size_t j = 0; j < bk->params.size(); ++j) {
      Tensor& g = from[bk->params[j]]->grad;
      std::memcpy(dst + bk->offsets[j], g.data<float>(), g.nbytes());
      g.zero_();
    }
  }
  stashed_.push_back(global_index);
}

void GradientSync::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  if (options_.mode == Determinism::fast)
    finish_fast();
  else
    finish_bitwise();
  stats_.finish_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.buckets = buckets_.size();
  stats_.bytes_sent = step_bytes_;
  step_bytes_ = 0;
}

void GradientSync::finish_fast() {
  for (std::size_t b = 0; b < buckets_.size(); ++b)
    if (!buckets_[b]->started) start_bucket(b);
  for (auto& bk : buckets_) {
    if (bk->op) {
      bk->op->wait();
      bk->op.reset();
      const float* flat = bk->flat->data();
      for (std::size_t j = 0; j < bk->params.size(); ++j) {
        Tensor& g = params_[bk->params[j]]->grad;
        std::memcpy(g.data<float>(), flat + bk->offsets[j], g.nbytes());
      }
    }
    bk->started = false;
    bk->not_ready = bk->params.size();
  }
  std::fill(ready_.begin(), ready_.end(), false);
}

void GradientSync::finish_bitwise() {
  const auto size = static_cast<std::size_t>(comm_.size());
  const int64_t local = static_cast<int64_t>(stashed_.size());
  std::vector<int64_t> counts(size, 0);
  counts[static_cast<std::size_t>(comm_.rank())] = local;
  comm_.allreduce(counts, ReduceOp::sum);
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total == 0) throw Error("GradientSync::finish (bitwise): no rank stashed a micro-batch this step");
  std::vector<int64_t> order(static_cast<std::size_t>(total));
  comm_.allgatherv(stashed_, order, counts);
  // slot_of[g] = position of global micro-batch g in the gathered (rank-major) order.
  std::vector<std::size_t> slot_of(order.size(), order.size());
  for (std::size_t s = 0; s < order.size(); ++s) {
    const int64_t g = order[s];
    if (g < 0 || g >= total || slot_of[static_cast<std::size_t>(g)] != order.size())
      throw Error("GradientSync::finish (bitwise): the ranks' micro-batch indices are not 0.." +
                  std::to_string(total - 1) + " each once (index " + std::to_string(g) + ")");
    slot_of[static_cast<std::size_t>(g)] = s;
  }

  std::size_t max_numel = 0;
  for (auto& bk : buckets_) max_numel = std::max(max_numel, bk->numel);
  struct Gather {
    std::shared_ptr<std::vector<float>> stash;
    std::vector<float> recv;
  };
  std::array<std::shared_ptr<Gather>, 2> gathers;
  std::array<std::unique_ptr<PendingOp>, 2> ops;
  const auto post = [&](std::size_t b) {
    Bucket& bk = *buckets_[b];
    auto& gp = gathers[b % 2];
    // A fresh buffer if the old one may still be referenced by an abandoned operation.
    if (!gp || gp.use_count() > 1) gp = std::make_shared<Gather>();
    gp->stash = bk.stash;
    gp->recv.resize(static_cast<std::size_t>(total) * max_numel);
    std::vector<int64_t> bcounts(size);
    for (std::size_t r = 0; r < size; ++r) bcounts[r] = counts[r] * static_cast<int64_t>(bk.numel);
    ops[b % 2] = comm_.start_allgatherv(
        std::span<const float>(bk.stash->data(), static_cast<std::size_t>(local) * bk.numel),
        std::span<float>(gp->recv.data(), static_cast<std::size_t>(total) * bk.numel), bcounts, gp,
        "allgatherv of gradient bucket " + std::to_string(b) + " (" +
            mib(static_cast<std::size_t>(total) * bk.numel * sizeof(float)) + ", bitwise mode)");
    step_bytes_ += static_cast<std::size_t>(local) * bk.numel * sizeof(float);
  };
  std::vector<double> acc(max_numel);
  if (!buckets_.empty()) post(0);
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    if (b + 1 < buckets_.size()) post(b + 1);
    ops[b % 2]->wait();
    ops[b % 2].reset();
    Bucket& bk = *buckets_[b];
    const float* recv = gathers[b % 2]->recv.data();
    // Fixed order: global micro-batch 0, 1, ..., M-1, in double, from 0.0.
    std::fill_n(acc.begin(), bk.numel, 0.0);
    for (int64_t g = 0; g < total; ++g) {
      const float* src = recv + slot_of[static_cast<std::size_t>(g)] * bk.numel;
      for (std::size_t e = 0; e < bk.numel; ++e) acc[e] += static_cast<double>(src[e]);
    }
    for (std::size_t j = 0; j < bk.params.size(); ++j) {
      Tensor& grad = params_[bk.params[j]]->grad;
      float* dst = grad.data<float>();
      const double* a = acc.data() + bk.offsets[j];
      for (int64_t e = 0; e < grad.numel(); ++e) dst[e] = static_cast<float>(a[e]);
    }
    bk.stash->clear();  // keeps its capacity for the next step
  }
  stashed_.clear();
}

}  // namespace crackseg::dist
