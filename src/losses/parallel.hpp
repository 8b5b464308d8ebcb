// Host loops for losses, optimizers and metrics, written as labelled Kokkos kernels on the
// default host execution space (OpenMP with a cluster's own Kokkos). Debian's Kokkos is
// Serial-only: there the same loops run as OpenMP loops of our own (the threads the run was
// given, `train.threads`), so Adam, the gradient norm, the loss and the metrics do not run on
// one core while the others wait (they were ~10% of a 2-thread Spiral-Net step).
//
// Bitwise reproducibility: floating-point sums must not depend on the thread count, so no
// Kokkos::parallel_reduce over doubles here (its tree shape follows the threads). Instead
// [0, n) is cut into fixed chunks of kChunk elements (independent of threads); each chunk is
// summed sequentially in index order into its own slot (a parallel_for over chunks), and the
// chunk partials are then added on one thread in chunk order. The result is the same for 1 or
// 64 threads and for Serial vs OpenMP. When Kokkos is not initialised (a tool calling the
// library without crackseg::Runtime) the same loops run inline with identical results.
#pragma once
#include <Kokkos_Core.hpp>
#if defined(_OPENMP)
#include <omp.h>
#endif
#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace crackseg::par {

inline constexpr int64_t kChunk = 4096;

#if defined(KOKKOS_ENABLE_SERIAL)
inline constexpr bool kSerialKokkos = std::is_same_v<Kokkos::DefaultHostExecutionSpace, Kokkos::Serial>;
#else
inline constexpr bool kSerialKokkos = false;
#endif

// OpenMP in place of a Serial-only Kokkos: only where this code was built with OpenMP and is
// not already inside a parallel region (batch-parallel replicas run one per thread).
[[nodiscard]] inline bool use_openmp() {
#if defined(_OPENMP)
  return kSerialKokkos && !omp_in_parallel() && omp_get_max_threads() > 1;
#else
  return false;
#endif
}

// body(i) for i in [0, n) over the host threads, any order (no reduction crosses iterations).
template <class F>
void parallel_range(const char* label, int64_t n, F&& body) {
#if defined(_OPENMP)
  if (use_openmp()) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  if (!Kokkos::is_initialized()) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  using Policy = Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace, Kokkos::IndexType<int64_t>>;
  Kokkos::parallel_for(label, Policy(0, n), [&](int64_t i) { body(i); });
}

// f(i) for i in [0, n), any order, in parallel: elementwise kernels with no reduction. Runs
// inline below `serial_below` iterations (cheap bodies; pass 2 when each iteration is heavy).
template <class F>
void for_each(const char* label, int64_t n, F&& f, int64_t serial_below = kChunk) {
  if (n <= 0) return;
  if (n < serial_below) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  parallel_range(label, n, f);
}

// K sums over [0, n): f(i, acc) adds element i's contributions into acc (std::array<double, K>).
// Deterministic in the thread count as explained above.
template <int K, class F>
[[nodiscard]] std::array<double, K> sum(const char* label, int64_t n, F&& f) {
  std::array<double, K> total{};
  if (n <= 0) return total;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  // Scratch reused across calls so a steady-state step does not allocate.
  thread_local std::vector<std::array<double, K>> partial;
  if (static_cast<int64_t>(partial.size()) < chunks) partial.resize(static_cast<std::size_t>(chunks));
  auto* slots = partial.data();
  auto chunk_body = [&](int64_t c) {
    std::array<double, K> acc{};
    const int64_t end = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < end; ++i) f(i, acc);
    slots[c] = acc;
  };
  if (chunks == 1) {
    chunk_body(0);
  } else {
    parallel_range(label, chunks, chunk_body);
  }
  for (int64_t c = 0; c < chunks; ++c)
    for (int k = 0; k < K; ++k) total[static_cast<std::size_t>(k)] += slots[c][static_cast<std::size_t>(k)];
  return total;
}

}  // namespace crackseg::par
