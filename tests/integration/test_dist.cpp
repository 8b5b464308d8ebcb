// ctest-labels: mpi
// ctest-ranks: 1 2 4
// ctest-link: crackseg_train
// ctest-timeout: 120
// MPI communicator and gradient sync: collectives on inputs whose results are exactly
// predictable, bucketed fast-mode sync equal to a plain allreduce, bitwise mode equal to a
// rank-count-independent serial sum to the last bit, the hung-collective timeout, and the
// preemption flag agreement.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <numeric>
#include <thread>

#include "src/core/rng.hpp"
#include "src/dist/bench.hpp"
#include "src/dist/gradient_sync.hpp"
#include "src/dist/mpi_communicator.hpp"
#include "src/train/signals.hpp"

using namespace crackseg;
using namespace crackseg::dist;

namespace {

// A model's worth of parameters with awkward sizes (odd, tiny, larger than a bucket).
struct FakeModel {
  std::vector<Param> storage;
  std::vector<Param*> params;
  explicit FakeModel(const std::vector<Dims>& shapes) {
    storage.reserve(shapes.size());
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      storage.push_back(Param{"layer" + std::to_string(i) + ".weight", Tensor::zeros(shapes[i]), Tensor::zeros(shapes[i]), true});
      params.push_back(&storage.back());
    }
  }
  std::size_t total() const {
    std::size_t n = 0;
    for (const auto& p : storage) n += static_cast<std::size_t>(p.grad.numel());
    return n;
  }
  // All grads, concatenated in parameter order.
  std::vector<float> flat() const {
    std::vector<float> out;
    for (const auto& p : storage) out.insert(out.end(), p.grad.data<float>(), p.grad.data<float>() + p.grad.numel());
    return out;
  }
};

const std::vector<Dims> kShapes = {{16, 3, 3, 3}, {16}, {7}, {32, 16, 3, 3}, {32}, {1}, {64, 32, 3, 3}, {64}, {1, 64, 1, 1}, {1}};

// A per-micro-batch gradient value with a wide spread of magnitudes, so that summation
// order changes the rounded result: a function of (global micro-batch, element) only.
float micro_batch_grad(int64_t g, std::size_t element) {
  const float u = rng_uniform(126, 0, static_cast<uint64_t>(g), Purpose::noise, element) - 0.5f;
  static constexpr float scales[] = {1e-3f, 1.0f, 1e3f, 0.1f, 17.0f};
  return u * scales[(element + static_cast<std::size_t>(g)) % 5];
}

}  // namespace

TEST(MpiCommunicator, RankAndSizeMatchTheWorld) {
  MpiCommunicator comm;
  int rank = -1, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm.rank(), rank);
  EXPECT_EQ(comm.size(), size);
  EXPECT_EQ(comm.name(), "mpi");
  comm.barrier();
}

TEST(MpiCommunicator, AllreduceOfRankDependentIntegersIsExact) {
  MpiCommunicator comm;
  const int64_t R = comm.size(), r = comm.rank();
  std::vector<float> f(1000);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>((r + 1) * static_cast<int64_t>(i + 1));
  comm.allreduce_sum(f);
  for (std::size_t i = 0; i < f.size(); ++i)
    ASSERT_EQ(f[i], static_cast<float>(static_cast<int64_t>(i + 1) * R * (R + 1) / 2)) << i;

  std::vector<int64_t> v = {r, r * r, -r, int64_t{1} << 40};
  comm.allreduce(v, ReduceOp::sum);
  EXPECT_EQ(v[0], R * (R - 1) / 2);
  EXPECT_EQ(v[1], (R - 1) * R * (2 * R - 1) / 6);
  EXPECT_EQ(v[3], R << 40);
  EXPECT_EQ(comm.allreduce_value(r, ReduceOp::max), R - 1);
  EXPECT_EQ(comm.allreduce_value(r + 5, ReduceOp::min), 5);
  EXPECT_EQ(comm.allreduce_value(static_cast<double>(r) + 0.25, ReduceOp::sum), R * (R - 1) / 2.0 + 0.25 * R);
  EXPECT_EQ(comm.allreduce_value(-static_cast<double>(r), ReduceOp::min), -static_cast<double>(R - 1));
}

TEST(MpiCommunicator, BroadcastFromTheLastRank) {
  MpiCommunicator comm;
  const int root = comm.size() - 1;
  std::vector<float> f(257, static_cast<float>(comm.rank()));
  if (comm.rank() == root) std::iota(f.begin(), f.end(), 0.5f);
  comm.broadcast(f, root);
  for (std::size_t i = 0; i < f.size(); ++i) ASSERT_EQ(f[i], static_cast<float>(i) + 0.5f);
  std::string s = comm.rank() == root ? std::string("{\"train\": {\"seed\": 126}}") : std::string("stale");
  comm.broadcast_string(s, root);
  EXPECT_EQ(s, "{\"train\": {\"seed\": 126}}");
  std::array<std::byte, 3> b{};
  if (comm.rank() == root) b = {std::byte{1}, std::byte{2}, std::byte{255}};
  comm.broadcast_bytes(b, root);
  EXPECT_EQ(b[2], std::byte{255});
}

TEST(MpiCommunicator, AllgathervPlacesEachRankInOrder) {
  MpiCommunicator comm;
  const int64_t R = comm.size(), r = comm.rank();
  std::vector<int64_t> counts(static_cast<std::size_t>(R));
  for (int64_t q = 0; q < R; ++q) counts[static_cast<std::size_t>(q)] = q + 1;
  std::vector<int64_t> send(static_cast<std::size_t>(r + 1));
  for (int64_t j = 0; j <= r; ++j) send[static_cast<std::size_t>(j)] = 100 * r + j;
  std::vector<int64_t> recv(static_cast<std::size_t>(R * (R + 1) / 2));
  comm.allgatherv(send, recv, counts);
  std::size_t k = 0;
  for (int64_t q = 0; q < R; ++q)
    for (int64_t j = 0; j <= q; ++j) EXPECT_EQ(recv[k++], 100 * q + j);
  std::vector<int64_t> wrong(recv.size() + 1);
  EXPECT_THROW(comm.allgatherv(send, wrong, counts), Error);  // caught before any communication
}

TEST(GradientSync, BucketsFollowReverseParameterOrder) {
  MpiCommunicator comm;
  FakeModel m(kShapes);
  GradientSync sync(comm, m.params, {Determinism::fast, 4096});
  std::vector<std::size_t> order;
  for (const auto& b : sync.buckets()) {
    std::size_t bytes = 0;
    for (std::size_t i : b) {
      order.push_back(i);
      bytes += static_cast<std::size_t>(m.storage[i].grad.nbytes());
    }
    if (&b != &sync.buckets().back()) {
      EXPECT_GE(bytes, 4096u);
    }
    // A bucket closes as soon as it reaches the size: without its last param it was smaller.
    EXPECT_LT(bytes - static_cast<std::size_t>(m.storage[b.back()].grad.nbytes()), 4096u);
  }
  std::vector<std::size_t> expected(kShapes.size());
  std::iota(expected.rbegin(), expected.rend(), 0);
  EXPECT_EQ(order, expected);
  EXPECT_GT(sync.buckets().size(), 2u);
}

TEST(GradientSync, BucketsStartInOrderAsSoonAsTheirGradientsAreReady) {
  MpiCommunicator comm;
  FakeModel m(kShapes);
  GradientSync sync(comm, m.params, {Determinism::fast, 4096});
  const auto& b = sync.buckets();
  ASSERT_GE(b.size(), 3u);
  // Bucket 1 complete first: it must wait for bucket 0 (same collective order on every rank).
  for (std::size_t i : b[1]) sync.mark_ready(i);
  EXPECT_EQ(sync.started_buckets(), 0u);
  for (std::size_t k = 0; k + 1 < b[0].size(); ++k) sync.mark_ready(b[0][k]);
  EXPECT_EQ(sync.started_buckets(), 0u);
  sync.mark_ready(b[0].back());  // bucket 0 complete: 0 and 1 start, before finish()
  EXPECT_EQ(sync.started_buckets(), 2u);
  sync.finish();
  EXPECT_EQ(sync.started_buckets(), 0u);
}

TEST(GradientSync, FastModeEqualsAPlainAllreduce) {
  MpiCommunicator comm;
  FakeModel m(kShapes);
  GradientSync sync(comm, m.params, {Determinism::fast, 4096});
  for (int step = 0; step < 3; ++step) {
    // Integer-valued gradients: every summation order gives the same, exact result.
    std::size_t e = 0;
    for (auto& p : m.storage)
      for (float& x : p.grad.span<float>()) x = static_cast<float>((comm.rank() + 1) * static_cast<int>(e++ % 1000) - step);
    std::vector<float> expected = m.flat();
    comm.allreduce_sum(expected);
    // Gradients become ready out of order (a U-Net's skips do that); step 2 marks none.
    if (step == 0)
      for (std::size_t i = m.params.size(); i-- > 0;) sync.mark_ready(i);
    if (step == 1)
      for (std::size_t i : {3, 9, 0, 8, 7, 1, 2, 6, 5, 4}) sync.mark_ready(i);
    sync.finish();
    EXPECT_EQ(m.flat(), expected) << "step " << step;
    EXPECT_EQ(sync.last_stats().buckets, sync.buckets().size());
    EXPECT_EQ(sync.last_stats().bytes_sent, comm.size() > 1 ? m.total() * sizeof(float) : 0u);
  }
  // Random values: a plain allreduce and the bucketed one agree to float rounding of <= 4 terms.
  std::size_t e = 0;
  for (auto& p : m.storage)
    for (float& x : p.grad.span<float>()) x = micro_batch_grad(comm.rank(), e++);
  std::vector<float> expected = m.flat();
  comm.allreduce_sum(expected);
  sync.finish();
  const std::vector<float> got = m.flat();
  for (std::size_t i = 0; i < got.size(); ++i) {
    double magnitude = 0;
    for (int r = 0; r < comm.size(); ++r) magnitude += std::abs(micro_batch_grad(r, i));
    ASSERT_NEAR(got[i], expected[i], 4 * magnitude * 0x1.0p-24) << i;
  }
  EXPECT_THROW(sync.mark_ready(99), Error);
  sync.mark_ready(0);
  EXPECT_THROW(sync.mark_ready(0), Error);
  sync.finish();
}

TEST(GradientSync, BitwiseModeIsTheFixedOrderSumAtEveryRankCount) {
  MpiCommunicator comm;
  const int64_t M = 8;  // global micro-batches per step: 8, 4 or 2 per rank at 1, 2, 4 ranks
  if (M % comm.size() != 0) GTEST_SKIP() << "8 micro-batches do not split over " << comm.size() << " ranks";
  FakeModel m(kShapes);
  GradientSync sync(comm, m.params, {Determinism::bitwise, 4096});
  for (int step = 0; step < 2; ++step) {
    // Round-robin ownership (g = j * R + r) so the gather has to reorder.
    for (int64_t g = comm.rank(); g < M; g += comm.size()) {
      std::size_t e = 0;
      for (auto& p : m.storage)
        for (float& x : p.grad.span<float>()) x = micro_batch_grad(g + step, e++);
      sync.stash_micro_batch(g);
      for (const auto& p : m.storage)
        for (float x : p.grad.span<float>()) ASSERT_EQ(x, 0.0f) << "stash must zero the grads";
    }
    sync.finish();
    const std::vector<float> got = m.flat();
    std::size_t reordered_differs = 0;
    for (std::size_t e = 0; e < got.size(); ++e) {
      double acc = 0.0;
      float reversed = 0.0f;
      for (int64_t g = 0; g < M; ++g) acc += static_cast<double>(micro_batch_grad(g + step, e));
      for (int64_t g = M; g-- > 0;) reversed += micro_batch_grad(g + step, e);
      const float want = static_cast<float>(acc);
      ASSERT_EQ(std::memcmp(&got[e], &want, sizeof(float)), 0) << "element " << e << ": " << got[e] << " vs " << want;
      reordered_differs += reversed != want;
    }
    // The inputs are order-sensitive, so equality above is a real check of the order.
    EXPECT_GT(reordered_differs, got.size() / 20);
  }
  EXPECT_THROW(sync.mark_ready(0), Error);
  sync.stash_micro_batch(comm.rank());
  EXPECT_THROW(sync.stash_micro_batch(comm.rank()), Error);
  sync.finish();  // a step with one micro-batch per rank
}

TEST(MpiCommunicator, TimeoutNamesTheOperationWhenARankIsLate) {
  MpiCommunicator comm(MPI_COMM_WORLD, 0.3);
  if (comm.size() < 2) GTEST_SKIP() << "needs a second rank to be late";
  if (comm.rank() == 0) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      (void)comm.allreduce_value(int64_t{1}, ReduceOp::sum);
      ADD_FAILURE() << "the allreduce completed although the other ranks were 1.5 s late";
    } catch (const CollectiveTimeout& e) {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string msg = e.what();
      EXPECT_NE(msg.find("allreduce (sum) of 1 int64"), std::string::npos) << msg;
      EXPECT_NE(msg.find("dist.timeout_s = 0.3 s"), std::string::npos) << msg;
      EXPECT_NE(msg.find("waited 0.3"), std::string::npos) << msg;
      EXPECT_GE(waited, 0.3);
      EXPECT_LT(waited, 1.4);
    }
    EXPECT_EQ(comm.abandoned(), 1u);
    // The late ranks arrive after 1.5 s and complete the abandoned allreduce.
    EXPECT_TRUE(comm.drain_abandoned(60.0));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    EXPECT_EQ(comm.allreduce_value(int64_t{1}, ReduceOp::sum), comm.size());
  }
  comm.set_timeout_s(60.0);
  comm.barrier();  // the communicator is usable again once everyone caught up
}

TEST(GradientSync, TimeoutNamesTheBucketAndAbandonsSafely) {
  MpiCommunicator comm(MPI_COMM_WORLD, 0.3);
  if (comm.size() < 2) GTEST_SKIP() << "needs a second rank to be late";
  FakeModel m(kShapes);
  for (auto& p : m.storage) p.grad.fill_(1.0f);
  if (comm.rank() == 0) {
    {
      GradientSync sync(comm, m.params, {Determinism::fast, 4096});
      try {
        sync.finish();
        ADD_FAILURE() << "finish() completed although the other ranks were 1.5 s late";
      } catch (const CollectiveTimeout& e) {
        EXPECT_NE(std::string(e.what()).find("allreduce of gradient bucket 0"), std::string::npos) << e.what();
      }
    }  // destroying the sync abandons its posted buckets; their buffers stay alive
    EXPECT_GE(comm.abandoned(), 1u);
    EXPECT_TRUE(comm.drain_abandoned(60.0));
  } else {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    GradientSync sync(comm, m.params, {Determinism::fast, 4096});
    sync.finish();
    for (float x : m.storage[0].grad.span<float>()) ASSERT_EQ(x, static_cast<float>(comm.size()));
  }
  comm.set_timeout_s(60.0);
  comm.barrier();
}

TEST(Signals, AnyRanksSignalStopsEveryRank) {
  MpiCommunicator comm;
  install_stop_signal_handlers();
  clear_stop_request();
  EXPECT_FALSE(agree_stop(comm));
  if (comm.rank() == comm.size() - 1) {
    ASSERT_EQ(std::raise(SIGUSR1), 0);  // the handler, not the default action (termination)
    EXPECT_TRUE(stop_requested());
    EXPECT_EQ(stop_signal(), SIGUSR1);
  } else {
    EXPECT_FALSE(stop_requested());
  }
  EXPECT_TRUE(agree_stop(comm));
  clear_stop_request();
  EXPECT_FALSE(agree_stop(comm));
  if (comm.rank() == 0) {
    ASSERT_EQ(std::raise(SIGTERM), 0);
  }
  EXPECT_TRUE(agree_stop(comm));
  EXPECT_EQ(stop_signal(), comm.rank() == 0 ? SIGTERM : 0);
  clear_stop_request();
}

TEST(Bench, AllreduceBandwidthRowsAreCompleteAndCorrect) {
  MpiCommunicator comm;
  const auto rows = allreduce_bandwidth(comm, {64, 4096}, 0.01);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["bytes"], 4096);
  for (const auto& r : rows) {
    EXPECT_TRUE(r["correct"].get<bool>()) << r.dump();
    EXPECT_GE(r["iters"].get<int>(), 3);
    EXPECT_GT(r["seconds"].get<double>(), 0.0);
  }
  EXPECT_GT(memcpy_bandwidth_GBps(1 << 16, 0.01), 0.0);
}
