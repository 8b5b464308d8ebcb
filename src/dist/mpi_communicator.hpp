// Communicator over MPI (host memory). Owns a duplicate of the parent communicator, so its
// collectives never match anyone else's, with MPI_ERRORS_RETURN so failures reach
// CRACKSEG_MPI_CHECK. Blocking collectives are non-blocking ones plus a deadline wait; they
// stage data through buffers the operation owns, so a timed-out operation that MPI may still
// complete later never writes into memory the caller has freed.
#pragma once
#include <mpi.h>

#include <memory>

#include "src/dist/communicator.hpp"

namespace crackseg::dist {

namespace detail {
struct MpiState;
}

class MpiCommunicator final : public Communicator {
 public:
  // timeout_s: deadline of every wait (dist.timeout_s); 0 = wait forever.
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD, double timeout_s = 600.0);
  ~MpiCommunicator() override;

  [[nodiscard]] int rank() const override;
  [[nodiscard]] int size() const override;
  [[nodiscard]] std::string name() const override { return "mpi"; }
  [[nodiscard]] double timeout_s() const override;
  void set_timeout_s(double t);
  [[nodiscard]] MPI_Comm comm() const;

  void barrier() override;
  void broadcast(std::span<float> buf, int root) override;
  void broadcast_bytes(std::span<std::byte> buf, int root) override;
  void allreduce_sum(std::span<float> buf) override;
  void allreduce(std::span<int64_t> values, ReduceOp op) override;
  void allreduce(std::span<double> values, ReduceOp op) override;
  void allgatherv(std::span<const int64_t> send, std::span<int64_t> recv, std::span<const int64_t> counts) override;

  [[nodiscard]] std::unique_ptr<PendingOp> start_allreduce_sum(std::span<float> buf, std::shared_ptr<void> keepalive,
                                                               std::string what) override;
  [[nodiscard]] std::unique_ptr<PendingOp> start_allgatherv(std::span<const float> send, std::span<float> recv,
                                                            std::span<const int64_t> counts,
                                                            std::shared_ptr<void> keepalive,
                                                            std::string what) override;

  // Operations abandoned after a timeout and not yet complete.
  [[nodiscard]] std::size_t abandoned() const;
  // Waits up to `limit_s` for abandoned operations to complete (a late rank arriving);
  // true when none is left. For tests and orderly shutdown; production aborts instead.
  bool drain_abandoned(double limit_s);

 private:
  std::shared_ptr<detail::MpiState> state_;
};

}  // namespace crackseg::dist
