// Dropout on the device with the very Philox the CPU uses (src/core/rng.hpp is constexpr
// and compiled for the device with --expt-relaxed-constexpr), keyed by the same
// src/core/dropout_rng.hpp functions the CPU kernels call, so masks agree bit for bit.
// Sample ids of up to kDropoutInlineIds items travel in the kernel's arguments (no upload,
// no host synchronisation); larger batches read them from a device array.
#include "kernels/cuda/context.hpp"
#include "kernels/cuda/elementwise.hpp"
#include "kernels/cuda/launch.cuh"
#include "src/core/dropout_rng.hpp"

namespace crackseg::cuda {
namespace {

__global__ void k_dropout(DropoutArgs a, DropoutIds inline_ids, const uint64_t* sample_ids, const float* src,
                          float* dst) {
  const int64_t per = a.c * a.h * a.w, total = a.n * per;
  const double scale = a.p >= 1.0f ? 0.0 : 1.0 / (1.0 - static_cast<double>(a.p));
  CRACKSEG_GRID_STRIDE(off, total) {
    const int64_t n = off / per, r = off % per;
    const uint64_t i = dropout_logical_index(r, a.c, a.h, a.w, a.nhwc);
    const uint64_t sample = sample_ids          ? sample_ids[n]
                            : inline_ids.count ? inline_ids.ids[n]
                                               : static_cast<uint64_t>(n);
    const float u = dropout_uniform(a.seed, a.salt, a.epoch, sample, i);
    dst[off] = u < a.p ? 0.0f : static_cast<float>(src[off] * scale);
  }
}

__global__ void k_words(uint64_t seed, uint64_t epoch, uint64_t sample, uint64_t first, int64_t count, uint32_t* out) {
  CRACKSEG_GRID_STRIDE(i, count) {
    out[i] = rng_word(seed, epoch, sample, Purpose::dropout, first + static_cast<uint64_t>(i));
  }
}

}  // namespace

void dropout_apply(const DropoutArgs& a, const DropoutIds& inline_ids, const uint64_t* sample_ids, const float* src,
                   float* dst) {
  const int64_t total = a.n * a.c * a.h * a.w;
  if (total == 0) return;
  k_dropout<<<grid_for(total), kThreads, 0, Context::get().stream()>>>(a, inline_ids, sample_ids, src, dst);
  CRACKSEG_CUDA_CHECK_LAUNCH("dropout_apply");
}

void dropout_rng_words(uint64_t seed, uint64_t epoch, uint64_t sample, uint64_t first, int64_t count,
                       uint32_t* out) {
  if (count == 0) return;
  k_words<<<grid_for(count), kThreads, 0, Context::get().stream()>>>(seed, epoch, sample, first, count, out);
  CRACKSEG_CUDA_CHECK_LAUNCH("dropout_rng_words");
}

}  // namespace crackseg::cuda
