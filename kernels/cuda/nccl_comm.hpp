// NCCL data parallelism: one rank per GPU (the Context picks device = local rank % GPUs),
// an NCCL communicator created from a unique id that rank 0 broadcasts over MPI, and a
// bucketed gradient allreduce that runs on its own stream, overlapped with backward:
//
//   NcclCommunicator comm(MPI_COMM_WORLD);
//   BucketedAllreduce sync(comm, grads /* in backward order */, 25 << 20, Mode::fast);
//   sync.begin_step();
//   ... after each layer's backward:  sync.mark_ready(i) for its gradients
//   sync.finish();   // compute stream waits for the reductions; grads hold the sums
//
// A bucket is launched as soon as all its gradients are marked ready: an event recorded on
// the compute stream orders the NCCL stream after the kernels that wrote them, and the
// bucket's allreduces go out as one NCCL group. In `bitwise` mode each bucket is
// all-gathered instead and summed on the device in rank order 0, 1, ..., R-1, so the sum
// does not depend on NCCL's algorithm choice (ring/tree) and matches a fixed-order MPI sum.
#pragma once
#include <mpi.h>

#include <cstddef>
#include <vector>

#include "kernels/cuda/check.hpp"

namespace crackseg::cuda {

class NcclCommunicator {
 public:
  // Collective over `comm`: every rank must call it. Throws with NCCL's or MPI's message.
  explicit NcclCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  [[nodiscard]] int rank() const { return rank_; }
  [[nodiscard]] int size() const { return size_; }
  [[nodiscard]] ncclComm_t get() const { return comm_.get(); }
  // The stream NCCL work runs on (not the compute stream).
  [[nodiscard]] cudaStream_t stream() const { return stream_.get(); }
  // In-place sum over ranks of a device buffer, ordered after the compute stream's work so
  // far; the compute stream waits for it. Asynchronous to the host.
  void allreduce_sum(float* data, std::size_t count);
  // data (count) -> gathered (size() * count), rank r's block at r * count. Same ordering.
  void allgather(const float* data, float* gathered, std::size_t count);
  // Host-blocking barrier over the NCCL stream (tests, shutdown).
  void synchronize() const;

 private:
  int rank_ = 0, size_ = 1;
  Stream stream_;
  NcclComm comm_;
  Event ready_, done_;
};

// Sums gradient tensors over ranks in buckets of about `bucket_bytes`.
class BucketedAllreduce {
 public:
  enum class Mode { fast, bitwise };
  struct Buffer {
    float* data = nullptr;
    std::size_t count = 0;
  };
  // `grads` in the order backward produces them (last layer first), device memory that
  // stays valid. Plans buckets and allocates the bitwise staging buffer once.
  BucketedAllreduce(NcclCommunicator& comm, std::vector<Buffer> grads, std::size_t bucket_bytes, Mode mode);
  void begin_step();
  // Gradient i (index into `grads`) is final on the compute stream.
  void mark_ready(std::size_t i);
  // Launches what is left, then makes the compute stream wait for every bucket.
  void finish();
  [[nodiscard]] std::size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::size_t first = 0, last = 0;  // grads [first, last)
    std::size_t count = 0;            // elements
    std::size_t pending = 0;
    bool launched = false;
    Event ready, done;
  };
  void launch(Bucket& b);
  NcclCommunicator& comm_;
  std::vector<Buffer> grads_;
  std::vector<std::size_t> bucket_of_;
  std::vector<Bucket> buckets_;
  Mode mode_;
  DevicePtr staging_;  // bitwise: size * largest bucket
};

// Device helper for bitwise mode: out[i] = sum_r gathered[r * count + i], r = 0..ranks-1 in
// order (float additions, left to right). Runs on `stream`.
void sum_ranks_in_order(const float* gathered, int ranks, std::size_t count, float* out, cudaStream_t stream);

}  // namespace crackseg::cuda
