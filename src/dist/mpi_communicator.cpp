#include "src/dist/mpi_communicator.hpp"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "src/core/mpi_check.hpp"

namespace crackseg::dist {
namespace detail {

struct Abandoned {
  MPI_Request request;
  std::shared_ptr<void> keepalive;
  std::string what;
};

struct MpiState {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  double timeout_s = 600.0;
  std::vector<Abandoned> abandoned;
};

}  // namespace detail

namespace {

using detail::MpiState;
using Clock = std::chrono::steady_clock;

bool mpi_alive() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

int to_count(std::size_t n, const char* what) {
  if (n > static_cast<std::size_t>(INT_MAX))
    throw Error(std::string("MPI ") + what + ": " + std::to_string(n) +
                " elements exceed MPI's int count; split the buffer");
  return static_cast<int>(n);
}

MPI_Op to_mpi(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g s", s);
  return buf;
}

// Test-and-sleep until the request completes or the deadline passes. MPI_Test also drives
// progress of the posted operations (Open MPI's non-blocking collectives advance only inside
// MPI calls), so the first 20 ms poll with a yield (gradient buckets, control values); after
// that, sleeping 100 us between polls keeps a rank that waits long (for rank 0 writing a
// checkpoint, say) from burning a core it shares.
void wait_request(const MpiState& st, MPI_Request& req, const std::string& what) {
  const auto start = Clock::now();
  while (req != MPI_REQUEST_NULL) {
    int done = 0;
    CRACKSEG_MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
    if (done) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (st.timeout_s > 0 && elapsed > st.timeout_s)
      throw CollectiveTimeout("MPI " + what + " did not complete within dist.timeout_s = " + fmt_seconds(st.timeout_s) +
                              " (waited " + fmt_seconds(elapsed) + "; " + where_am_i() + ", rank " +
                              std::to_string(st.rank) + " of " + std::to_string(st.size) +
                              " in this communicator): another rank is dead, stuck or skipped this collective; "
                              "the job must end (crackseg calls MPI_Abort)");
    if (elapsed < 0.02)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

class MpiOp final : public PendingOp {
 public:
  MpiOp(std::shared_ptr<MpiState> state, std::shared_ptr<void> keepalive, std::string what)
      : state_(std::move(state)), keepalive_(std::move(keepalive)), what_(std::move(what)) {}
  ~MpiOp() override {
    // Never wait here: this runs while unwinding from a timeout.
    if (request_ != MPI_REQUEST_NULL && mpi_alive())
      state_->abandoned.push_back({request_, std::move(keepalive_), std::move(what_)});
  }
  [[nodiscard]] MPI_Request* request() { return &request_; }
  [[nodiscard]] bool test() override {
    if (request_ == MPI_REQUEST_NULL) return true;
    int done = 0;
    CRACKSEG_MPI_CHECK(MPI_Test(&request_, &done, MPI_STATUS_IGNORE));
    return done != 0;
  }
  void wait() override { wait_request(*state_, request_, what_); }

 private:
  std::shared_ptr<MpiState> state_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::shared_ptr<void> keepalive_;
  std::string what_;
};

// Counts and displacements of a v-collective; MPI reads them until completion, so a
// non-blocking one keeps them with its other buffers.
struct VLayout {
  std::vector<int> counts, displs;
  VLayout(std::span<const int64_t> c, int size, std::size_t send_n, int rank, std::size_t recv_n, const char* what) {
    if (c.size() != static_cast<std::size_t>(size))
      throw Error(std::string("MPI ") + what + ": " + std::to_string(c.size()) + " counts for " +
                  std::to_string(size) + " ranks");
    if (c[static_cast<std::size_t>(rank)] != static_cast<int64_t>(send_n))
      throw Error(std::string("MPI ") + what + ": counts[" + std::to_string(rank) + "] = " +
                  std::to_string(c[static_cast<std::size_t>(rank)]) + " but this rank sends " + std::to_string(send_n));
    std::size_t total = 0;
    for (int64_t n : c) {
      if (n < 0) throw Error(std::string("MPI ") + what + ": negative count " + std::to_string(n));
      displs.push_back(to_count(total, what));
      counts.push_back(to_count(static_cast<std::size_t>(n), what));
      total += static_cast<std::size_t>(n);
    }
    if (total != recv_n)
      throw Error(std::string("MPI ") + what + ": counts sum to " + std::to_string(total) + " but the receive buffer holds " +
                  std::to_string(recv_n));
  }
};

template <typename T>
struct Staged {
  std::vector<T> send, recv;
  std::unique_ptr<VLayout> layout;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, double timeout_s) : state_(std::make_shared<MpiState>()) {
  if (!mpi_alive()) throw Error("MpiCommunicator: MPI is not initialised (construct crackseg::Runtime first)");
  CRACKSEG_MPI_CHECK(MPI_Comm_dup(parent, &state_->comm));
  CRACKSEG_MPI_CHECK(MPI_Comm_set_errhandler(state_->comm, MPI_ERRORS_RETURN));
  CRACKSEG_MPI_CHECK(MPI_Comm_rank(state_->comm, &state_->rank));
  CRACKSEG_MPI_CHECK(MPI_Comm_size(state_->comm, &state_->size));
  set_timeout_s(timeout_s);
}

MpiCommunicator::~MpiCommunicator() {
  if (!state_ || state_->comm == MPI_COMM_NULL || !mpi_alive()) return;
  bool pending = false;
  for (auto& a : state_->abandoned) {
    int done = 0;
    if (MPI_Test(&a.request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || !done) {
      // MPI may still write into these buffers: leak them deliberately (the job is ending).
      new std::shared_ptr<void>(std::move(a.keepalive));
      pending = true;
    }
  }
  state_->abandoned.clear();
  if (!pending) MPI_Comm_free(&state_->comm);
}

int MpiCommunicator::rank() const { return state_->rank; }
int MpiCommunicator::size() const { return state_->size; }
double MpiCommunicator::timeout_s() const { return state_->timeout_s; }
MPI_Comm MpiCommunicator::comm() const { return state_->comm; }
void MpiCommunicator::set_timeout_s(double t) {
  if (!(t >= 0)) throw InputError("dist.timeout_s must be >= 0 (0 = no timeout), got " + std::to_string(t));
  state_->timeout_s = t;
}

void MpiCommunicator::barrier() {
  MpiOp op(state_, nullptr, "barrier");
  CRACKSEG_MPI_CHECK(MPI_Ibarrier(state_->comm, op.request()));
  op.wait();
}

void MpiCommunicator::broadcast(std::span<float> buf, int root) {
  broadcast_bytes(std::as_writable_bytes(buf), root);
}

void MpiCommunicator::broadcast_bytes(std::span<std::byte> buf, int root) {
  auto stage = std::make_shared<Staged<std::byte>>();
  stage->send.assign(buf.begin(), buf.end());
  MpiOp op(state_, stage, "broadcast of " + std::to_string(buf.size()) + " bytes from rank " + std::to_string(root));
  CRACKSEG_MPI_CHECK(MPI_Ibcast(stage->send.data(), to_count(buf.size(), "broadcast"), MPI_BYTE, root, state_->comm,
                                op.request()));
  op.wait();
  std::copy(stage->send.begin(), stage->send.end(), buf.begin());
}

void MpiCommunicator::allreduce_sum(std::span<float> buf) {
  auto stage = std::make_shared<Staged<float>>();
  stage->send.assign(buf.begin(), buf.end());
  MpiOp op(state_, stage, "allreduce_sum of " + std::to_string(buf.size()) + " floats");
  CRACKSEG_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, stage->send.data(), to_count(buf.size(), "allreduce_sum"),
                                    MPI_FLOAT, MPI_SUM, state_->comm, op.request()));
  op.wait();
  std::copy(stage->send.begin(), stage->send.end(), buf.begin());
}

namespace {
template <typename T>
void allreduce_values(const std::shared_ptr<MpiState>& st, std::span<T> values, ReduceOp op, MPI_Datatype type,
                      const char* type_name) {
  auto stage = std::make_shared<Staged<T>>();
  stage->send.assign(values.begin(), values.end());
  static constexpr const char* op_names[] = {"sum", "max", "min"};
  MpiOp pending(st, stage, std::string("allreduce (") + op_names[static_cast<int>(op)] + ") of " +
                               std::to_string(values.size()) + " " + type_name);
  CRACKSEG_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, stage->send.data(), to_count(values.size(), "allreduce"), type,
                                    to_mpi(op), st->comm, pending.request()));
  pending.wait();
  std::copy(stage->send.begin(), stage->send.end(), values.begin());
}
}  // namespace

void MpiCommunicator::allreduce(std::span<int64_t> values, ReduceOp op) {
  allreduce_values(state_, values, op, MPI_INT64_T, "int64");
}
void MpiCommunicator::allreduce(std::span<double> values, ReduceOp op) {
  allreduce_values(state_, values, op, MPI_DOUBLE, "double");
}

void MpiCommunicator::allgatherv(std::span<const int64_t> send, std::span<int64_t> recv,
                                 std::span<const int64_t> counts) {
  auto stage = std::make_shared<Staged<int64_t>>();
  stage->layout = std::make_unique<VLayout>(counts, state_->size, send.size(), state_->rank, recv.size(), "allgatherv");
  stage->send.assign(send.begin(), send.end());
  stage->recv.resize(recv.size());
  MpiOp op(state_, stage, "allgatherv of " + std::to_string(recv.size()) + " int64");
  CRACKSEG_MPI_CHECK(MPI_Iallgatherv(stage->send.data(), to_count(send.size(), "allgatherv"), MPI_INT64_T,
                                     stage->recv.data(), stage->layout->counts.data(), stage->layout->displs.data(),
                                     MPI_INT64_T, state_->comm, op.request()));
  op.wait();
  std::copy(stage->recv.begin(), stage->recv.end(), recv.begin());
}

std::unique_ptr<PendingOp> MpiCommunicator::start_allreduce_sum(std::span<float> buf, std::shared_ptr<void> keepalive,
                                                                std::string what) {
  auto op = std::make_unique<MpiOp>(state_, std::move(keepalive), std::move(what));
  CRACKSEG_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf.data(), to_count(buf.size(), "allreduce_sum"), MPI_FLOAT,
                                    MPI_SUM, state_->comm, op->request()));
  return op;
}

std::unique_ptr<PendingOp> MpiCommunicator::start_allgatherv(std::span<const float> send, std::span<float> recv,
                                                             std::span<const int64_t> counts,
                                                             std::shared_ptr<void> keepalive, std::string what) {
  struct Keep {
    std::shared_ptr<void> user;
    VLayout layout;
  };
  auto keep = std::make_shared<Keep>(
      Keep{std::move(keepalive), VLayout(counts, state_->size, send.size(), state_->rank, recv.size(), "allgatherv")});
  auto op = std::make_unique<MpiOp>(state_, keep, std::move(what));
  CRACKSEG_MPI_CHECK(MPI_Iallgatherv(send.data(), to_count(send.size(), "allgatherv"), MPI_FLOAT, recv.data(),
                                     keep->layout.counts.data(), keep->layout.displs.data(), MPI_FLOAT, state_->comm,
                                     op->request()));
  return op;
}

std::size_t MpiCommunicator::abandoned() const { return state_->abandoned.size(); }

bool MpiCommunicator::drain_abandoned(double limit_s) {
  const auto start = Clock::now();
  auto& list = state_->abandoned;
  while (!list.empty()) {
    for (auto it = list.begin(); it != list.end();) {
      int done = 0;
      CRACKSEG_MPI_CHECK(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE));
      it = done ? list.erase(it) : std::next(it);
    }
    if (list.empty() || std::chrono::duration<double>(Clock::now() - start).count() > limit_s) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return list.empty();
}

}  // namespace crackseg::dist
