#include "src/dist/bench.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>

namespace crackseg::dist {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

nlohmann::json allreduce_bandwidth(Communicator& comm, const std::vector<std::size_t>& sizes_bytes,
                                   double seconds_budget) {
  nlohmann::json rows = nlohmann::json::array();
  const int64_t R = comm.size();
  for (std::size_t bytes : sizes_bytes) {
    const std::size_t n = std::max<std::size_t>(1, bytes / sizeof(float));
    auto buf = std::make_shared<std::vector<float>>(n);
    std::vector<double> times;
    bool correct = true;
    const auto t_start = Clock::now();
    // Every rank must run the same number of repeats: rank 0 decides after each one.
    for (int64_t go = 1; go != 0;) {
      // Small integers: the sum is exact whatever order MPI adds in.
      for (std::size_t i = 0; i < n; ++i) (*buf)[i] = static_cast<float>((comm.rank() + 1) * static_cast<int64_t>(i % 64));
      comm.barrier();
      const auto t0 = Clock::now();
      auto op = comm.start_allreduce_sum(*buf, buf, "benchmark allreduce of " + std::to_string(n * 4) + " bytes");
      op->wait();
      times.push_back(comm.allreduce_value(since(t0), ReduceOp::max));
      for (std::size_t i = 0; i < n; ++i)
        correct = correct && (*buf)[i] == static_cast<float>(static_cast<int64_t>(i % 64) * R * (R + 1) / 2);
      const bool more = times.size() < 3 || (since(t_start) < seconds_budget && times.size() < 1000);
      go = comm.allreduce_value(int64_t{more ? 1 : 0}, ReduceOp::max);
    }
    std::nth_element(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2), times.end());
    const double t = times[times.size() / 2];
    const double algbw = static_cast<double>(n * sizeof(float)) / t / 1e9;
    rows.push_back({{"bytes", n * sizeof(float)},
                    {"iters", times.size()},
                    {"seconds", t},
                    {"algbw_GBps", algbw},
                    {"busbw_GBps", R > 1 ? algbw * 2.0 * static_cast<double>(R - 1) / static_cast<double>(R) : 0.0},
                    {"correct", comm.allreduce_value(int64_t{correct ? 0 : 1}, ReduceOp::max) == 0}});
  }
  return rows;
}

double memcpy_bandwidth_GBps(std::size_t bytes, double seconds_budget) {
  std::vector<char> a(bytes, 1), b(bytes, 0);
  std::memcpy(b.data(), a.data(), bytes);  // fault the pages in
  std::vector<double> times;
  const auto t_start = Clock::now();
  while (times.size() < 3 || (since(t_start) < seconds_budget && times.size() < 1000)) {
    const auto t0 = Clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    times.push_back(since(t0));
    a[times.size() % bytes] = b[(times.size() * 7) % bytes];  // keep the copies observable
  }
  std::sort(times.begin(), times.end());
  return 2.0 * static_cast<double>(bytes) / times[times.size() / 2] / 1e9;
}

}  // namespace crackseg::dist
