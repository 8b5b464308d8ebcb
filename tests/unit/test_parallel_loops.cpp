// ctest-link: crackseg_train
// The host loops of losses, optimizers and metrics (src/losses/parallel.hpp) run on the run's
// OpenMP threads (Debian's Kokkos is Serial-only: they used to run on one core while the
// others waited), never nest inside a parallel region, and give the same bits for any thread
// count: the chunked sums, Adam, the gradient norm and the BCE loss with 1, 2, 3 and 4 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "src/losses/loss.hpp"
#include "src/losses/parallel.hpp"
#include "src/optim/optimizer.hpp"

using namespace crackseg;

namespace {

// Restores the OpenMP thread count a test changed.
struct Threads {
  int saved = omp_get_max_threads();
  explicit Threads(int n) { omp_set_num_threads(n); }
  ~Threads() { omp_set_num_threads(saved); }
};

// Values whose float sum depends on the order of additions (magnitudes 1e-6 .. 1e8).
std::vector<float> order_sensitive(int64_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const double u = static_cast<double>(s >> 11) / 9007199254740992.0;
    x = static_cast<float>((u - 0.3) * std::pow(10.0, static_cast<int>(s % 15) - 6));
  }
  return v;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && std::memcmp(a.raw(), b.raw(), static_cast<std::size_t>(a.numel()) * 4) == 0;
}

}  // namespace

TEST(ParallelLoops, ForEachRunsOnTheRunsThreads) {
  Threads t(3);
  std::vector<int> owner(200000, -1);
  par::for_each("test::owner", static_cast<int64_t>(owner.size()),
                [&](int64_t i) { owner[static_cast<std::size_t>(i)] = omp_get_thread_num(); });
  const std::set<int> seen(owner.begin(), owner.end());
  EXPECT_EQ(seen.count(-1), 0u) << "an index was skipped";
  EXPECT_EQ(seen.size(), 3u) << "the loop did not use the 3 threads it was given";
}

TEST(ParallelLoops, SumChunksRunOnTheRunsThreads) {
  Threads t(2);
  std::vector<int> owner(static_cast<std::size_t>(8 * par::kChunk), -1);
  (void)par::sum<1>("test::owner_sum", static_cast<int64_t>(owner.size()), [&](int64_t i, std::array<double, 1>& a) {
    owner[static_cast<std::size_t>(i)] = omp_get_thread_num();
    a[0] += 1;
  });
  EXPECT_EQ(std::set<int>(owner.begin(), owner.end()).size(), 2u);
}

TEST(ParallelLoops, InsideAParallelRegionTheLoopStaysOnTheCallingThread) {
  Threads t(2);
  std::vector<std::vector<int>> owners(2, std::vector<int>(50000, -1));
  std::vector<int> caller(2, -1);
#pragma omp parallel num_threads(2)
  {
    const int me = omp_get_thread_num();
    caller[static_cast<std::size_t>(me)] = me;
    auto& o = owners[static_cast<std::size_t>(me)];
    par::for_each("test::nested", static_cast<int64_t>(o.size()),
                  [&](int64_t i) { o[static_cast<std::size_t>(i)] = omp_get_thread_num(); });
  }
  for (int me = 0; me < 2; ++me) {
    if (caller[static_cast<std::size_t>(me)] < 0) continue;  // a team smaller than asked for
    const auto& o = owners[static_cast<std::size_t>(me)];
    EXPECT_EQ(std::set<int>(o.begin(), o.end()), std::set<int>{me}) << "nested loop left thread " << me;
  }
}

TEST(ParallelLoops, SumsGiveTheFixedChunkOrderBitsForAnyThreadCount) {
  const std::vector<float> v = order_sensitive(37 * par::kChunk + 123);
  const auto n = static_cast<int64_t>(v.size());
  // The rule written out: each chunk summed in index order, chunks added in chunk order.
  std::array<double, 2> expect{};
  for (int64_t c = 0; c * par::kChunk < n; ++c) {
    std::array<double, 2> acc{};
    for (int64_t i = c * par::kChunk; i < std::min(n, (c + 1) * par::kChunk); ++i) {
      acc[0] += v[static_cast<std::size_t>(i)];
      acc[1] += static_cast<double>(v[static_cast<std::size_t>(i)]) * v[static_cast<std::size_t>(i)];
    }
    expect[0] += acc[0];
    expect[1] += acc[1];
  }
  double plain = 0;  // one left-to-right sum differs: the test data really is order-sensitive
  for (float x : v) plain += x;
  ASSERT_NE(plain, expect[0]);
  for (int threads : {1, 2, 3, 4}) {
    Threads t(threads);
    const auto got = par::sum<2>("test::sum", n, [&](int64_t i, std::array<double, 2>& a) {
      a[0] += v[static_cast<std::size_t>(i)];
      a[1] += static_cast<double>(v[static_cast<std::size_t>(i)]) * v[static_cast<std::size_t>(i)];
    });
    EXPECT_EQ(got[0], expect[0]) << threads << " threads";
    EXPECT_EQ(got[1], expect[1]) << threads << " threads";
  }
}

TEST(ParallelLoops, AdamGradNormAndBceGiveTheSameBitsForAnyThreadCount) {
  const int64_t n = 300000;
  const std::vector<float> w0 = order_sensitive(n);
  struct Run {
    Tensor weights, dlogits;
    double norm = 0, loss = 0;
  };
  auto run = [&](int threads) {
    Threads t(threads);
    Param p;
    p.name = "w";
    p.value = Tensor::empty({n});
    p.grad = Tensor::empty({n});
    std::memcpy(p.value.raw(), w0.data(), static_cast<std::size_t>(n) * 4);
    auto opt = make_optimizer(nlohmann::json{{"name", "adam"}, {"lr", 1e-3}, {"weight_decay", 0.01}}, {&p});
    Run r;
    for (int step = 0; step < 3; ++step) {
      float* g = p.grad.data<float>();
      for (int64_t i = 0; i < n; ++i) g[i] = std::sin(static_cast<float>(i * (step + 1))) * w0[static_cast<std::size_t>(i)];
      r.norm = opt->step().grad_norm;
    }
    r.weights = p.value;
    Tensor logits = Tensor::empty({3, 1, 200, 200});
    Tensor target = Tensor::empty({3, 1, 200, 200});
    for (int64_t i = 0; i < logits.numel(); ++i) {
      logits.data<float>()[i] = w0[static_cast<std::size_t>(i)] * 1e-3f;
      target.data<float>()[i] = (i % 7) < 2 ? 1.0f : 0.0f;
    }
    r.dlogits = Tensor::empty(logits.dims());
    r.loss = make_loss({{"name", "bce"}})->forward_backward(logits, target, r.dlogits).loss;
    return r;
  };
  const Run one = run(1);
  for (int threads : {2, 3, 4}) {
    const Run many = run(threads);
    EXPECT_TRUE(same_bits(one.weights, many.weights)) << "Adam weights, " << threads << " threads";
    EXPECT_EQ(one.norm, many.norm) << threads << " threads";
    EXPECT_EQ(one.loss, many.loss) << threads << " threads";
    EXPECT_TRUE(same_bits(one.dlogits, many.dlogits)) << "BCE gradient, " << threads << " threads";
  }
}
