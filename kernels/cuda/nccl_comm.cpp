#include "kernels/cuda/nccl_comm.hpp"

#include <chrono>
#include <exception>
#include <thread>

#include "kernels/cuda/context.hpp"
#include "src/core/mpi_check.hpp"
#include "src/dist/comm_teardown.hpp"

namespace crackseg::cuda {

namespace {

MPI_Op mpi_op(dist::ReduceOp op) {
  switch (op) {
    case dist::ReduceOp::sum: return MPI_SUM;
    case dist::ReduceOp::max: return MPI_MAX;
    case dist::ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

class NcclPending final : public dist::PendingOp {
 public:
  NcclPending(NcclCommunicator& comm, std::shared_ptr<void> keepalive, Event done, std::string what)
      : comm_(comm), keepalive_(std::move(keepalive)), done_(std::move(done)), what_(std::move(what)) {}
  ~NcclPending() override {
    if (!complete_ && done_) comm_.adopt(std::move(keepalive_), std::move(done_));
  }
  bool test() override {
    if (complete_) return true;
    const cudaError_t rc = cudaEventQuery(done_.get());
    if (rc == cudaErrorNotReady) return false;
    CRACKSEG_CUDA_CHECK(rc);
    complete_ = true;
    return true;
  }
  void wait() override {
    if (complete_) return;
    comm_.wait(done_.get(), what_);
    complete_ = true;
  }

 private:
  NcclCommunicator& comm_;
  std::shared_ptr<void> keepalive_;
  Event done_;
  std::string what_;
  bool complete_ = false;
};

}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm parent, double timeout_s) : timeout_s_(timeout_s) {
  auto& ctx = Context::get();  // selects this rank's GPU from its node-local rank
  CRACKSEG_MPI_CHECK(MPI_Comm_dup(parent, &mpi_));
  CRACKSEG_MPI_CHECK(MPI_Comm_set_errhandler(mpi_, MPI_ERRORS_RETURN));
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(mpi_, &rank_));
  CRACKSEG_MPI_CHECK(MPI_Comm_size(mpi_, &size_));
  ncclUniqueId id{};
  if (rank_ == 0) CRACKSEG_NCCL_CHECK(ncclGetUniqueId(&id));
  CRACKSEG_MPI_CHECK(MPI_Bcast(&id, static_cast<int>(sizeof(id)), MPI_BYTE, 0, mpi_));
  CRACKSEG_CUDA_CHECK(cudaSetDevice(ctx.device()));
  stream_ = make_stream();
  ready_ = make_event();
  done_ = make_event();
  // Non-blocking: a peer that never arrives cannot hang the constructor (settle's deadline).
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  const ncclResult_t rc = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
  if (rc != ncclSuccess && rc != ncclInProgress) {
    abort();
    CRACKSEG_NCCL_CHECK(rc);
  }
  try {
    settle("communicator initialisation (ncclCommInitRankConfig) of " + std::to_string(size_) + " ranks");
  } catch (...) {
    abort();  // the destructor does not run for a throwing constructor
    stream_.reset();
    MPI_Comm_free(&mpi_);
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  // The policy (src/dist/comm_teardown.hpp, host-tested): after an abort nothing more; while
  // unwinding, abort (no ncclCommDestroy, which would flush the stuck operation, and no stream
  // synchronisation); on a clean exit finalise (flushes this rank's outstanding operations,
  // polled under the deadline), destroy, and synchronise the stream so that every kernel
  // reading the abandoned operations' buffers is finished before they are released
  // (explicitly, not through cudaFree's implicit sync); a failed finalise aborts instead.
  dist::run_teardown(unwind_.unwinding(),
                     {.aborted = [this] { return aborted_; },
                      .finalize =
                          [this] {
                            CRACKSEG_NCCL_CHECK(ncclCommFinalize(comm_));
                            settle("communicator finalisation (ncclCommFinalize)");
                          },
                      .destroy =
                          [this] {
                            (void)ncclCommDestroy(comm_);
                            comm_ = nullptr;
                          },
                      .abort = [this] { abort(); },
                      .sync =
                          [this] {
                            if (stream_) (void)cudaStreamSynchronize(stream_.get());
                          }});
  abandoned_.clear();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
}

void NcclCommunicator::abort() noexcept {
  device_work_abandoned() = true;  // no frees that would wait on the cancelled work
  if (comm_) (void)ncclCommAbort(comm_);
  comm_ = nullptr;
  aborted_ = true;
}

void NcclCommunicator::settle(const std::string& what) {
  if (aborted_ || !comm_) throw Error("NCCL " + what + ": the communicator was aborted after an earlier failure (" +
                                      where_am_i() + ")");
  // Aborts before throwing on an NCCL error or after the deadline (src/dist/comm_teardown.hpp).
  dist::poll_until_done(
      [this] {
        ncclResult_t state = ncclSuccess;
        const ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
        if (rc != ncclSuccess) state = rc;
        if (state == ncclSuccess) return dist::PollStatus{dist::PollState::done, nullptr};
        if (state == ncclInProgress) return dist::PollStatus{dist::PollState::in_progress, nullptr};
        CRACKSEG_NCCL_CHECK(state);  // throws, with NCCL's message read before the abort
        return dist::PollStatus{dist::PollState::error, nullptr};
      },
      [this] { abort(); }, timeout_s_, "NCCL " + what, dist::PollClock::steady(std::chrono::microseconds(100)));
}

void NcclCommunicator::enter() {
  CRACKSEG_CUDA_CHECK(cudaEventRecord(ready_.get(), Context::get().stream()));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), ready_.get(), 0));
}

void NcclCommunicator::leave(cudaEvent_t done) {
  CRACKSEG_CUDA_CHECK(cudaEventRecord(done, stream_.get()));
  CRACKSEG_CUDA_CHECK(cudaStreamWaitEvent(Context::get().stream(), done, 0));
}

void NcclCommunicator::wait(cudaEvent_t done, const std::string& what) {
  if (aborted_) throw Error("NCCL " + what + ": the communicator was aborted after an earlier failure (" +
                            where_am_i() + ")");
  // A CUDA error, an NCCL asynchronous error or the deadline aborts before the throw:
  // unwinding must not wait on the stuck collective (src/dist/comm_teardown.hpp).
  dist::poll_until_done(
      [this, done] {
        const cudaError_t rc = cudaEventQuery(done);
        if (rc == cudaSuccess) return dist::PollStatus{dist::PollState::done, nullptr};
        if (rc != cudaErrorNotReady) CRACKSEG_CUDA_CHECK(rc);  // throws
        ncclResult_t async = ncclSuccess;
        const ncclResult_t q = ncclCommGetAsyncError(comm_, &async);
        if (q != ncclSuccess) async = q;
        if (async != ncclSuccess && async != ncclInProgress) CRACKSEG_NCCL_CHECK(async);  // throws
        return dist::PollStatus{dist::PollState::in_progress, nullptr};
      },
      [this] { abort(); }, timeout_s_, "NCCL " + what, dist::PollClock::steady(std::chrono::microseconds(50)));
}

void NcclCommunicator::adopt(std::shared_ptr<void> keepalive, Event done) {
  abandoned_.push_back({std::move(keepalive), std::move(done)});
}

void NcclCommunicator::barrier() { CRACKSEG_MPI_CHECK(MPI_Barrier(mpi_)); }

void NcclCommunicator::broadcast(std::span<float> buf, int root) {
  enter();
  enqueue([&] {
    CRACKSEG_NCCL_CHECK(ncclBroadcast(buf.data(), buf.data(), buf.size(), ncclFloat32, root, comm_, stream_.get()));
  });
  settle("broadcast enqueue");
  leave(done_.get());
  wait(done_.get(), "broadcast of " + std::to_string(buf.size()) + " floats from rank " + std::to_string(root));
}

void NcclCommunicator::broadcast_bytes(std::span<std::byte> buf, int root) {
  CRACKSEG_MPI_CHECK(MPI_Bcast(buf.data(), static_cast<int>(buf.size()), MPI_BYTE, root, mpi_));
}

void NcclCommunicator::allreduce_sum(std::span<float> buf) {
  enter();
  enqueue([&] {
    CRACKSEG_NCCL_CHECK(ncclAllReduce(buf.data(), buf.data(), buf.size(), ncclFloat32, ncclSum, comm_, stream_.get()));
  });
  settle("allreduce enqueue");
  leave(done_.get());
  wait(done_.get(), "allreduce of " + std::to_string(buf.size()) + " floats");
}

void NcclCommunicator::allreduce(std::span<int64_t> values, dist::ReduceOp op) {
  CRACKSEG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_INT64_T,
                                   mpi_op(op), mpi_));
}

void NcclCommunicator::allreduce(std::span<double> values, dist::ReduceOp op) {
  CRACKSEG_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE,
                                   mpi_op(op), mpi_));
}

void NcclCommunicator::allgatherv(std::span<const int64_t> send, std::span<int64_t> recv,
                                  std::span<const int64_t> counts) {
  if (counts.size() != static_cast<std::size_t>(size_))
    throw Error("NcclCommunicator::allgatherv: " + std::to_string(counts.size()) + " counts for " +
                std::to_string(size_) + " ranks");
  std::vector<int> c(counts.size()), displ(counts.size());
  int64_t off = 0;
  for (std::size_t r = 0; r < counts.size(); ++r) {
    c[r] = static_cast<int>(counts[r]);
    displ[r] = static_cast<int>(off);
    off += counts[r];
  }
  if (static_cast<std::size_t>(off) != recv.size() || static_cast<int64_t>(send.size()) != counts[static_cast<std::size_t>(rank_)])
    throw Error("NcclCommunicator::allgatherv: counts do not match the send/recv sizes");
  CRACKSEG_MPI_CHECK(MPI_Allgatherv(send.data(), static_cast<int>(send.size()), MPI_INT64_T, recv.data(), c.data(),
                                    displ.data(), MPI_INT64_T, mpi_));
}

void NcclCommunicator::enqueue_allgatherv(const float* send, float* recv, std::span<const int64_t> counts) {
  enqueue([&] {
    NcclGroup group;  // closed before the abort when an enqueue throws
    int64_t off = 0;
    for (int r = 0; r < size_; ++r) {
      const auto n = static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]);
      CRACKSEG_NCCL_CHECK(ncclBroadcast(r == rank_ ? send : recv + off, recv + off, n, ncclFloat32, r, comm_,
                                        stream_.get()));
      off += static_cast<int64_t>(n);
    }
    group.end();
  });
  settle("allgatherv enqueue");
}

std::unique_ptr<dist::PendingOp> NcclCommunicator::start_allreduce_sum(std::span<float> buf,
                                                                       std::shared_ptr<void> keepalive,
                                                                       std::string what) {
  Event done = make_event();
  enter();
  enqueue([&] {
    CRACKSEG_NCCL_CHECK(ncclAllReduce(buf.data(), buf.data(), buf.size(), ncclFloat32, ncclSum, comm_, stream_.get()));
  });
  settle("allreduce enqueue (" + what + ")");
  leave(done.get());
  return std::make_unique<NcclPending>(*this, std::move(keepalive), std::move(done), std::move(what));
}

std::unique_ptr<dist::PendingOp> NcclCommunicator::start_allgatherv(std::span<const float> send,
                                                                    std::span<float> recv,
                                                                    std::span<const int64_t> counts,
                                                                    std::shared_ptr<void> keepalive,
                                                                    std::string what) {
  if (counts.size() != static_cast<std::size_t>(size_))
    throw Error("NcclCommunicator::start_allgatherv: " + std::to_string(counts.size()) + " counts for " +
                std::to_string(size_) + " ranks");
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (static_cast<int64_t>(recv.size()) < total ||
      static_cast<int64_t>(send.size()) != counts[static_cast<std::size_t>(rank_)])
    throw Error("NcclCommunicator::start_allgatherv: counts do not match the send/recv sizes");
  Event done = make_event();
  enter();
  enqueue_allgatherv(send.data(), recv.data(), counts);
  leave(done.get());
  return std::make_unique<NcclPending>(*this, std::move(keepalive), std::move(done), std::move(what));
}

}  // namespace crackseg::cuda
