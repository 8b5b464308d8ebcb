// Helpers for the CUDA tests: skip without a device, random host tensors, device round
// trips, and a per-op tolerance comparison in llm.c's form |a - ref| <= atol + rtol |ref|.
#pragma once
#include <gtest/gtest.h>

#include <mpi.h>

#include <cmath>
#include <set>
#include <string>

#include "kernels/cuda/device.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/core/node_rank.hpp"
#include "src/core/rng.hpp"
#include "src/tensor/tensor.hpp"

#define CRACKSEG_REQUIRE_GPU()                                                     \
  do {                                                                             \
    if (::crackseg::cuda::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace crackseg::test {

// True on every rank when each rank of `comm` drives a GPU no other rank drives: the device
// each picks (node-local rank % visible devices, as cuda::Context does) has a UUID no other
// rank's has. Per-task binding (every rank sees one GPU, a different one) counts; ranks
// sharing one GPU (NCCL refuses that) do not. Collective.
inline bool every_rank_has_its_own_gpu(MPI_Comm comm) {
  const int n = cuda::cuda_device_count();
  std::string uuid = n > 0 ? cuda::cuda_device_uuid(device_for_local_rank(process_local_rank(), n)) : "";
  uuid.resize(32, '\0');
  int size = 1;
  MPI_Comm_size(comm, &size);
  std::string all(32 * static_cast<std::size_t>(size), '\0');
  MPI_Allgather(uuid.data(), 32, MPI_CHAR, all.data(), 32, MPI_CHAR, comm);
  std::set<std::string> seen;
  for (int r = 0; r < size; ++r) {
    const std::string u = all.substr(32 * static_cast<std::size_t>(r), 32);
    if (u == std::string(32, '\0') || !seen.insert(u).second) return false;
  }
  return true;
}

// Uniform in [lo, hi), a pure function of (seed, index): reproducible data.
inline Tensor random_host(const Dims& dims, uint64_t seed, float lo = -1.0f, float hi = 1.0f,
                          Format format = Format::plain) {
  Tensor t = Tensor::empty(dims, DType::f32, dims.size() == 4 && format == Format::plain ? Format::nhwc : format);
  auto s = t.span<float>();
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = lo + (hi - lo) * rng_uniform(seed, 0, 0, Purpose::noise, i);
  return t;
}

// Elementwise |a - b| <= atol + rtol * |b| with the first failures reported by index.
inline ::testing::AssertionResult close(const Tensor& got, const Tensor& want, double atol, double rtol) {
  if (got.dims() != want.dims())
    return ::testing::AssertionFailure() << "dims " << to_string(got.dims()) << " vs " << to_string(want.dims());
  const Tensor g = got.device() == Device::cuda ? cuda::to_host(got) : got;
  auto a = g.span<float>();
  auto b = want.span<float>();
  int bad = 0;
  double worst = 0;
  std::string first;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(static_cast<double>(a[i]) - b[i]);
    if (!(d <= atol + rtol * std::abs(static_cast<double>(b[i])))) {
      if (bad++ < 5) first += " [" + std::to_string(i) + "] " + std::to_string(a[i]) + " vs " + std::to_string(b[i]);
      worst = std::max(worst, d);
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << bad << " of " << a.size() << " elements differ (worst " << worst
                                       << "):" << first;
}

}  // namespace crackseg::test
