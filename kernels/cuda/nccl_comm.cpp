#include "kernels/cuda/nccl_comm.hpp"

#include <algorithm>

#include "kernels/cuda/context.hpp"
#include "src/core/mpi_check.hpp"

namespace crackseg::cuda {

NcclCommunicator::NcclCommunicator(MPI_Comm comm) {
  auto& ctx = Context::get();  // selects this rank's GPU from its local rank
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(comm, &rank_));
  CRACKSEG_MPI_CHECK(MPI_Comm_size(comm, &size_));
  ncclUniqueId id{};
  if (rank_ == 0) CRACKSEG_NCCL_CHECK(ncclGetUniqueId(&id));
  CRACKSEG_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, comm));
  CRACKSEG_CUDA_CHECK(cudaSetDevice(ctx.device()));
  ncclComm_t c{};
  CRACKSEG_NCCL_CHECK(ncclCommInitRank(&c, size_, id, rank_));
  comm_ = NcclComm(c);
  stream_ = make_stream();
  ready_ = make_event();
  done_ = make_event();
}

void NcclCommunicator::allreduce_sum(float* data, std::size_t count) {
  cudaStream_t compute = Context::get().stream();
  CRACKSEG_CUDA_CHECK(cudaEventRecord(ready_.get(), compute));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), ready_.get(), 0));
  CRACKSEG_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclSum, comm_.get(), stream_.get()));
  CRACKSEG_CUDA_CHECK(cudaEventRecord(done_.get(), stream_.get()));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(compute, done_.get(), 0));
}

void NcclCommunicator::allgather(const float* data, float* gathered, std::size_t count) {
  cudaStream_t compute = Context::get().stream();
  CRACKSEG_CUDA_CHECK(cudaEventRecord(ready_.get(), compute));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), ready_.get(), 0));
  CRACKSEG_NCCL_CHECK(ncclAllGather(data, gathered, count, ncclFloat32, comm_.get(), stream_.get()));
  CRACKSEG_CUDA_CHECK(cudaEventRecord(done_.get(), stream_.get()));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(compute, done_.get(), 0));
}

void NcclCommunicator::synchronize() const { CRACKSEG_CUDA_CHECK(cudaStreamSynchronize(stream_.get())); }

BucketedAllreduce::BucketedAllreduce(NcclCommunicator& comm, std::vector<Buffer> grads, std::size_t bucket_bytes,
                                     Mode mode)
    : comm_(comm), grads_(std::move(grads)), mode_(mode) {
  const std::size_t cap = std::max<std::size_t>(bucket_bytes / sizeof(float), 1);
  bucket_of_.resize(grads_.size());
  std::size_t largest = 0;
  for (std::size_t i = 0; i < grads_.size();) {
    Bucket b;
    b.first = i;
    while (i < grads_.size() && (b.count == 0 || b.count + grads_[i].count <= cap)) {
      bucket_of_[i] = buckets_.size();
      b.count += grads_[i++].count;
    }
    b.last = i;
    b.ready = make_event();
    b.done = make_event();
    largest = std::max(largest, b.count);
    buckets_.push_back(std::move(b));
  }
  if (mode_ == Mode::bitwise && comm_.size() > 1)
    staging_ = DevicePtr(sizeof(float) * largest * static_cast<std::size_t>(comm_.size()));
}

void BucketedAllreduce::begin_step() {
  for (auto& b : buckets_) {
    b.pending = b.last - b.first;
    b.launched = false;
  }
}

void BucketedAllreduce::mark_ready(std::size_t i) {
  if (i >= grads_.size())
    throw Error("BucketedAllreduce::mark_ready: gradient " + std::to_string(i) + " of " + std::to_string(grads_.size()));
  Bucket& b = buckets_[bucket_of_[i]];
  if (b.pending == 0) throw Error("BucketedAllreduce::mark_ready: gradient " + std::to_string(i) + " marked twice");
  if (--b.pending == 0) launch(b);
}

void BucketedAllreduce::launch(Bucket& b) {
  b.launched = true;
  if (comm_.size() == 1) return;  // the sum over one rank is the gradient itself
  cudaStream_t compute = Context::get().stream(), nccl = comm_.stream();
  CRACKSEG_CUDA_CHECK(cudaEventRecord(b.ready.get(), compute));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(nccl, b.ready.get(), 0));
  if (mode_ == Mode::fast) {
    CRACKSEG_NCCL_CHECK(ncclGroupStart());
    for (std::size_t i = b.first; i < b.last; ++i)
      CRACKSEG_NCCL_CHECK(ncclAllReduce(grads_[i].data, grads_[i].data, grads_[i].count, ncclFloat32, ncclSum,
                                        comm_.get(), nccl));
    CRACKSEG_NCCL_CHECK(ncclGroupEnd());
  } else {
    // Gather each gradient into the staging area (rank-major per gradient), then sum in rank
    // order. One gradient at a time keeps the staging buffer at R x the largest bucket.
    const auto ranks = static_cast<std::size_t>(comm_.size());
    std::size_t offset = 0;
    CRACKSEG_NCCL_CHECK(ncclGroupStart());
    for (std::size_t i = b.first; i < b.last; ++i) {
      CRACKSEG_NCCL_CHECK(ncclAllGather(grads_[i].data, staging_.as<float>() + offset * ranks, grads_[i].count,
                                        ncclFloat32, comm_.get(), nccl));
      offset += grads_[i].count;
    }
    CRACKSEG_NCCL_CHECK(ncclGroupEnd());
    offset = 0;
    for (std::size_t i = b.first; i < b.last; ++i) {
      sum_ranks_in_order(staging_.as<float>() + offset * ranks, comm_.size(), grads_[i].count, grads_[i].data, nccl);
      offset += grads_[i].count;
    }
  }
  CRACKSEG_CUDA_CHECK(cudaEventRecord(b.done.get(), nccl));
}

void BucketedAllreduce::finish() {
  cudaStream_t compute = Context::get().stream();
  for (auto& b : buckets_) {
    if (!b.launched) launch(b);
    if (comm_.size() > 1) CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(compute, b.done.get(), 0));
  }
}

}  // namespace crackseg::cuda
