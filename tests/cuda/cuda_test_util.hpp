// Helpers for the CUDA tests: skip without a device, random host tensors, device round
// trips, and a per-op tolerance comparison in llm.c's form |a - ref| <= atol + rtol |ref|.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "kernels/cuda/device.hpp"
#include "kernels/cuda/tensor_ops.hpp"
#include "src/core/rng.hpp"
#include "src/tensor/tensor.hpp"

#define CRACKSEG_REQUIRE_GPU()                                                     \
  do {                                                                             \
    if (::crackseg::cuda::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace crackseg::test {

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
