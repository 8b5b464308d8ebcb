// The communicator interface data-parallel training talks to: rank, size, barrier,
// broadcast, allreduce of gradient buffers and of small control values (stop flags, metric
// counts), allgather for the fixed-order (bitwise) gradient sum, and non-blocking variants
// for overlapping gradient communication with backward (GradientSync).
//
// Implementations: MpiCommunicator (host memory, mpi_communicator.hpp); the NCCL one lives
// with the CUDA backend (kernels/cuda). Buffers are in the communicator's memory space
// (host for MPI, device for NCCL); nothing here names a device.
//
// Hung collectives: every wait has a deadline (timeout_s(), from dist.timeout_s; 0 = none).
// A collective that misses it throws CollectiveTimeout naming the operation and the time
// waited. The operation cannot be cancelled (MPI forbids cancelling collectives), so the
// caller must end the job: main() catches CollectiveTimeout and calls MPI_Abort.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "src/core/error.hpp"

namespace crackseg::dist {

enum class ReduceOp { sum, max, min };

class CollectiveTimeout : public Error {
 public:
  using Error::Error;
};

// A posted non-blocking collective. Destroying one that has not completed hands it to its
// communicator (which keeps its buffers alive), so unwinding after a timeout never blocks.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  PendingOp() = default;
  PendingOp(const PendingOp&) = delete;
  PendingOp& operator=(const PendingOp&) = delete;
  // Progresses the operation; true once it is complete.
  [[nodiscard]] virtual bool test() = 0;
  // Until complete; CollectiveTimeout after the communicator's timeout.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  [[nodiscard]] virtual std::string name() const = 0;  // "mpi", "nccl"
  [[nodiscard]] virtual double timeout_s() const = 0;

  virtual void barrier() = 0;
  virtual void broadcast(std::span<float> buf, int root) = 0;
  virtual void broadcast_bytes(std::span<std::byte> buf, int root) = 0;
  // In place: every rank ends with the elementwise sum over ranks.
  virtual void allreduce_sum(std::span<float> buf) = 0;
  virtual void allreduce(std::span<int64_t> values, ReduceOp op) = 0;
  virtual void allreduce(std::span<double> values, ReduceOp op) = 0;
  // recv = rank 0's send, then rank 1's, ... ; counts[r] = rank r's send size (known to all).
  virtual void allgatherv(std::span<const int64_t> send, std::span<int64_t> recv,
                          std::span<const int64_t> counts) = 0;

  // Non-blocking in-place sum. `keepalive` owns the memory `buf` points into; the operation
  // holds it until the communication is finished, even when the PendingOp is abandoned.
  // `what` names the operation in timeout messages ("gradient bucket 3 (4.0 MiB)").
  [[nodiscard]] virtual std::unique_ptr<PendingOp> start_allreduce_sum(std::span<float> buf,
                                                                       std::shared_ptr<void> keepalive,
                                                                       std::string what) = 0;
  // Non-blocking allgatherv of floats, same conventions as allgatherv.
  [[nodiscard]] virtual std::unique_ptr<PendingOp> start_allgatherv(std::span<const float> send,
                                                                    std::span<float> recv,
                                                                    std::span<const int64_t> counts,
                                                                    std::shared_ptr<void> keepalive,
                                                                    std::string what) = 0;

  // Conveniences for single control values.
  [[nodiscard]] int64_t allreduce_value(int64_t v, ReduceOp op) {
    std::array<int64_t, 1> a{v};
    allreduce(std::span<int64_t>(a), op);
    return a[0];
  }
  [[nodiscard]] double allreduce_value(double v, ReduceOp op) {
    std::array<double, 1> a{v};
    allreduce(std::span<double>(a), op);
    return a[0];
  }
  // Rank `root`'s string on every rank (e.g. the resolved config).
  void broadcast_string(std::string& s, int root) {
    int64_t n = static_cast<int64_t>(s.size());
    broadcast_bytes(std::as_writable_bytes(std::span<int64_t>(&n, 1)), root);
    s.resize(static_cast<std::size_t>(n));
    broadcast_bytes(std::as_writable_bytes(std::span<char>(s.data(), s.size())), root);
  }
};

}  // namespace crackseg::dist
