// dist::Communicator over NCCL: one rank per GPU (the Context picks device = local rank %
// GPUs), the NCCL communicator created from a unique id that rank 0 broadcasts over MPI.
//
// Memory spaces (communicator.hpp: "buffers are in the communicator's memory space"):
//   float collectives (broadcast, allreduce_sum, start_allreduce_sum, start_allgatherv)
//     take DEVICE spans and run on this communicator's own stream, ordered after the work
//     enqueued so far on the compute stream (an event), with the compute stream made to wait
//     for the result (another event): no host synchronisation on the hot path.
//   control values (barrier, broadcast_bytes, allreduce of int64/double, allgatherv of
//     int64) are HOST values and go over MPI on a duplicate of the parent communicator.
// Waits have the dist.timeout_s deadline: a blocking float collective waits on its event
// with the deadline; a PendingOp's wait() likewise; a miss throws CollectiveTimeout (main
// aborts the job). NCCL's asynchronous errors are checked while waiting.
//
// Failure and shutdown (a stuck or failed NCCL must end the job, never hang it):
//   - the communicator is created non-blocking (ncclCommInitRankConfig, blocking = 0) and
//     its initialisation, like every later call that answers ncclInProgress (connection
//     set-up is lazy), is polled through ncclCommGetAsyncError under the same deadline;
//   - a timeout, an NCCL asynchronous error or a CUDA error while waiting, and an enqueue
//     that fails outright, call ncclCommAbort BEFORE throwing: the stuck kernels end, and
//     nothing later waits on them;
//   - the destructor aborts (no ncclCommDestroy, which would flush the stuck operation, and
//     no stream synchronisation) while an exception is unwinding, does nothing more after an
//     abort; only a clean shutdown finalises (ncclCommFinalize, polled under the deadline),
//     destroys and synchronises;
//   - these decisions (the deadline poll, the teardown policy) are host code without CUDA or
//     NCCL in src/dist/comm_teardown.hpp, tested in CI by tests/unit/test_comm_teardown.cpp;
//   - the exception then reaches main(), which MPI_Aborts a multi-rank job, so a failure on
//     one rank ends every rank instead of leaving its peers to wait out the timeout.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/check.hpp"

// ncclGroupStart .. ncclGroupEnd as a scope: the group is closed on every path (an enqueue
// that throws in between would otherwise leave NCCL's thread-local group open, and the next
// collective of any communicator would join it).
namespace crackseg::cuda {
class NcclGroup {
 public:
  NcclGroup() { CRACKSEG_NCCL_CHECK(ncclGroupStart()); }
  ~NcclGroup() {
    if (open_) (void)ncclGroupEnd();
  }
  NcclGroup(const NcclGroup&) = delete;
  NcclGroup& operator=(const NcclGroup&) = delete;
  void end() {
    open_ = false;
    CRACKSEG_NCCL_CHECK(ncclGroupEnd());
  }

 private:
  bool open_ = true;
};
}  // namespace crackseg::cuda
#include "src/dist/comm_teardown.hpp"
#include "src/dist/communicator.hpp"

namespace crackseg::cuda {

class NcclCommunicator final : public dist::Communicator {
 public:
  // Collective over `parent`: every rank must call it.
  explicit NcclCommunicator(MPI_Comm parent = MPI_COMM_WORLD, double timeout_s = 600.0);
  ~NcclCommunicator() override;

  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] std::string name() const override { return "nccl"; }
  [[nodiscard]] double timeout_s() const override { return timeout_s_; }
  void set_timeout_s(double t) { timeout_s_ = t; }
  [[nodiscard]] ncclComm_t get() const { return comm_; }
  // ncclCommAbort now (idempotent, never throws): pending NCCL work is cancelled.
  void abort() noexcept;
  [[nodiscard]] bool aborted() const { return aborted_; }
  // Polls ncclCommGetAsyncError until the communicator is no longer ncclInProgress (a
  // non-blocking call's background work done): returns on ncclSuccess, aborts and throws on
  // an error or after the deadline (CollectiveTimeout naming `what`).
  void settle(const std::string& what);
  [[nodiscard]] cudaStream_t stream() const { return stream_.get(); }

  void barrier() override;
  void broadcast(std::span<float> device_buf, int root) override;
  void broadcast_bytes(std::span<std::byte> host_buf, int root) override;
  void allreduce_sum(std::span<float> device_buf) override;
  void allreduce(std::span<int64_t> values, dist::ReduceOp op) override;
  void allreduce(std::span<double> values, dist::ReduceOp op) override;
  void allgatherv(std::span<const int64_t> send, std::span<int64_t> recv, std::span<const int64_t> counts) override;

  [[nodiscard]] std::unique_ptr<dist::PendingOp> start_allreduce_sum(std::span<float> device_buf,
                                                                     std::shared_ptr<void> keepalive,
                                                                     std::string what) override;
  [[nodiscard]] std::unique_ptr<dist::PendingOp> start_allgatherv(std::span<const float> device_send,
                                                                  std::span<float> device_recv,
                                                                  std::span<const int64_t> counts,
                                                                  std::shared_ptr<void> keepalive,
                                                                  std::string what) override;

  // Lower-level pieces DeviceGradientSync uses: order the NCCL stream after the compute
  // stream, and record completion of what was enqueued since.
  void enter();  // NCCL stream waits for the compute stream's work so far
  // Records an event on the NCCL stream and makes the compute stream wait for it.
  void leave(cudaEvent_t done);
  // Host wait for `done` with the deadline; throws CollectiveTimeout naming `what`, or the
  // NCCL error when the communicator failed.
  void wait(cudaEvent_t done, const std::string& what);
  // allgatherv of device floats as a group of broadcasts (NCCL has no allgatherv), on the
  // NCCL stream; call between enter() and leave().
  void enqueue_allgatherv(const float* send, float* recv, std::span<const int64_t> counts);
  // Operations handed back by an abandoned PendingOp (they keep their buffers alive).
  void adopt(std::shared_ptr<void> keepalive, Event done);
  // Runs an NCCL enqueue; one that fails outright aborts the communicator before the throw.
  template <class F>
  void enqueue(F&& f) {
    if (aborted_ || !comm_)
      throw Error("NCCL enqueue: the communicator was aborted after an earlier failure (" + where_am_i() + ")");
    dist::abort_on_throw(std::forward<F>(f), [this] { abort(); });
  }

 private:

  int rank_ = 0, size_ = 1;
  double timeout_s_ = 600.0;
  MPI_Comm mpi_ = MPI_COMM_NULL;
  Stream stream_;
  ncclComm_t comm_ = nullptr;  // owned: finalised + destroyed, or aborted (see the header)
  bool aborted_ = false;
  dist::UnwindProbe unwind_;  // the destructor aborts while an exception is unwinding
  Event ready_, done_;
  struct Abandoned {
    std::shared_ptr<void> keepalive;
    Event done;
  };
  std::vector<Abandoned> abandoned_;
};

// out[e] = float(((0.0 + in[slot[0]][e]) + in[slot[1]][e]) + ... ), in double: the
// fixed-order sum of dist::GradientSync's bitwise mode. in is (slots x count).
void sum_slots_in_order(const float* in, const int64_t* slot_order, int64_t slots, int64_t count, float* out,
                        cudaStream_t stream);

}  // namespace crackseg::cuda
